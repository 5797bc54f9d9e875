"""The constellation's roster: every service, in start order, and the shapes it runs in.

One definition, used by `chorus up` (light and ``--ha``), `chorus run`, the chaos
harness, the NATS users (:mod:`chorus_cli.nats_users`), the end-to-end and
deployment tests and ``docs/generate_metrics.py``, and checked against the Helm
chart's default replica counts (``deploy/helm/chorus/values.yaml``), so that the
shape that ships is the shape that is tested.

The library below (``chorus_common``) names no service: a service process is
started with the module given here, or, given only a name, with the module its
package declares as a ``chorus.services`` entry point (a test keeps both equal).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CHART_KEYS",
    "HA_REPLICAS",
    "LIGHT_REPLICAS",
    "ROSTER",
    "SERVICES",
    "SERVICE_MODULES",
    "Member",
    "Replica",
    "replicas",
]


@dataclass(frozen=True)
class Member:
    """One service of the constellation."""

    #: the service's name: its NATS user, micro service (``chorus-<name>``), `chorus run`
    #: argument and instance-name stem
    name: str
    #: the python module run as ``python -m`` (also its ``chorus.services`` entry point)
    module: str
    #: replicas in the Helm chart's default values (`chorus up --ha`, the chaos tests)
    ha: int
    #: replicas in the light shape of a plain `chorus up`
    light: int
    #: the key of the service in the chart's values.yaml (camelCase there)
    chart_key: str
    #: holds a seat lease from licensing (every service but licensing itself)
    licensed: bool = True
    #: instances numbered even when there is one (DHT nodes: ``dht-1``…)
    numbered: bool = False


#: every service, in the start order of `chorus up`
ROSTER: tuple[Member, ...] = (
    Member("licensing", "chorus_licensing", ha=1, light=1, chart_key="licensing", licensed=False),
    Member("election", "chorus_election", ha=3, light=1, chart_key="election"),
    Member("pubsub-gateway", "chorus_gateway", ha=2, light=1, chart_key="pubsubGateway"),
    Member("dht", "chorus_dht", ha=3, light=3, chart_key="dht", numbered=True),
    Member("coordinator", "chorus_coordinator", ha=2, light=1, chart_key="coordinator"),
    Member("backbeat", "chorus_backbeat", ha=2, light=1, chart_key="backbeat"),
    Member("hap", "chorus_hap", ha=1, light=1, chart_key="hap"),
)

#: the roster by service name
SERVICES: dict[str, Member] = {m.name: m for m in ROSTER}
#: service name → python module; the order is the start order of `chorus up`
SERVICE_MODULES: dict[str, str] = {m.name: m.module for m in ROSTER}
#: replicas per service in the chart's default values; the order is the start order
HA_REPLICAS: dict[str, int] = {m.name: m.ha for m in ROSTER}
#: the light shape of a plain `chorus up`: every service once, three DHT nodes
LIGHT_REPLICAS: dict[str, int] = {m.name: m.light for m in ROSTER}
#: the chart's values.yaml keys of each service (camelCase there)
CHART_KEYS: dict[str, str] = {m.name: m.chart_key for m in ROSTER}


@dataclass(frozen=True)
class Replica:
    """One process of a shape: its instance name (also its node id) and its service."""

    name: str
    service: str

    @property
    def module(self) -> str:
        """The python module this replica runs."""
        return SERVICES[self.service].module


def replicas(counts: dict[str, int]) -> list[Replica]:
    """Instance names for ``counts``: a service run once is named after itself
    (``election``), several are numbered (``election-1``, ``election-2``); DHT nodes are
    always numbered (``dht-1``…), as every `chorus up` has named them."""
    out: list[Replica] = []
    for service, count in counts.items():
        numbered = service in SERVICES and SERVICES[service].numbered
        if count == 1 and not numbered:
            out.append(Replica(service, service))
        else:
            out.extend(Replica(f"{service}-{i + 1}", service) for i in range(count))
    return out
