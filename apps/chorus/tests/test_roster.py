"""The roster: one list of the constellation's services, agreeing with what is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from chorus_cli.nats_users import SERVICE_USERS
from chorus_cli.roster import (
    HA_REPLICAS,
    LIGHT_REPLICAS,
    ROSTER,
    SERVICE_MODULES,
    SERVICES,
    replicas,
)
from chorus_common.processes import ServiceProcess, installed_services, service_module


def test_every_service_package_declares_the_roster_module_as_its_entry_point() -> None:
    assert installed_services() == SERVICE_MODULES
    for member in ROSTER:
        assert service_module(member.name) == member.module
        assert importlib.util.find_spec(member.module) is not None, member.module


def test_a_process_given_only_its_service_runs_the_roster_module(tmp_path: Path) -> None:
    for member in ROSTER:
        proc = ServiceProcess(
            instance=member.name, service=member.name, port=1, env={}, log_path=tmp_path
        )
        assert proc.module == member.module


def test_names_are_unique_and_every_service_has_a_nats_user() -> None:
    assert len(SERVICES) == len(ROSTER)
    assert list(SERVICE_USERS) == [m.name for m in ROSTER]
    assert [m.name for m in ROSTER if not m.licensed] == ["licensing"]


def test_instance_names() -> None:
    assert [r.name for r in replicas({"election": 1, "dht": 1})] == ["election", "dht-1"]
    assert [r.name for r in replicas({"election": 2})] == ["election-1", "election-2"]
    assert sum(HA_REPLICAS.values()) == len(replicas(HA_REPLICAS)) == 14
    assert [r.module for r in replicas(LIGHT_REPLICAS)][:2] == [
        "chorus_licensing",
        "chorus_election",
    ]
