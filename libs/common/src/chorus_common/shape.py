"""The shapes a constellation runs in: how many replicas of each service.

One definition, used by `chorus up` (light and ``--ha``), the chaos and
end-to-end tests, and checked against the Helm chart's default replica counts
(``deploy/helm/chorus/values.yaml``), so that the shape that ships is the shape
that is tested.
"""

from __future__ import annotations

from dataclasses import dataclass

#: replicas per service in the chart's default values; the order is the start order
HA_REPLICAS: dict[str, int] = {
    "licensing": 1,
    "election": 3,
    "pubsub-gateway": 2,
    "dht": 3,
    "coordinator": 2,
    "backbeat": 2,
    "hap": 1,
}

#: the light shape of a plain `chorus up`: every service once, three DHT nodes
LIGHT_REPLICAS: dict[str, int] = {
    "licensing": 1,
    "election": 1,
    "pubsub-gateway": 1,
    "dht": 3,
    "coordinator": 1,
    "backbeat": 1,
    "hap": 1,
}

#: the chart's values.yaml keys of each service (camelCase there)
CHART_KEYS: dict[str, str] = {
    "licensing": "licensing",
    "election": "election",
    "pubsub-gateway": "pubsubGateway",
    "dht": "dht",
    "coordinator": "coordinator",
    "backbeat": "backbeat",
    "hap": "hap",
}


@dataclass(frozen=True)
class Replica:
    """One process of a shape: its instance name (also its node id) and its service."""

    name: str
    service: str


def replicas(counts: dict[str, int]) -> list[Replica]:
    """Instance names for ``counts``: a service run once is named after itself
    (``election``), several are numbered (``election-1``, ``election-2``); DHT nodes are
    always numbered (``dht-1``…), as every `chorus up` has named them."""
    out: list[Replica] = []
    for service, count in counts.items():
        if count == 1 and service != "dht":
            out.append(Replica(service, service))
        else:
            out.extend(Replica(f"{service}-{i + 1}", service) for i in range(count))
    return out


__all__ = ["CHART_KEYS", "HA_REPLICAS", "LIGHT_REPLICAS", "Replica", "replicas"]
