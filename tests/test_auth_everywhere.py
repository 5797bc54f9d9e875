"""Auth everywhere: every state-changing REST operation of every service demands a bearer token."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from chorus_cli.roster import SERVICE_MODULES
from chorus_common.service import Service

MUTATING = {"post", "put", "patch", "delete"}


def service_class(module: str) -> type[Service]:
    mod = importlib.import_module(module)
    classes = [
        v
        for v in vars(mod).values()
        if isinstance(v, type) and issubclass(v, Service) and v is not Service
    ]
    assert len(classes) == 1, f"{module} exports {classes}"
    return classes[0]


@pytest.mark.parametrize("service", sorted(SERVICE_MODULES))
def test_state_changing_operations_require_a_bearer_token(service: str, tmp_path: Path) -> None:
    cls = service_class(SERVICE_MODULES[service])
    instance = cls(cls.settings_class(data_dir=tmp_path, admin_token="t"))
    doc = instance.app.openapi()
    mutating = [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in MUTATING
    ]
    assert mutating, f"{service} has no state-changing operation to check"  # every one has some
    unguarded = [f"{m} {p}" for m, p, op in mutating if not op.get("security")]
    assert not unguarded, f"{service}: state-changing operations without a token: {unguarded}"
    for method, path, op in mutating:
        assert "401" in op["responses"], f"{service}: {method} {path} does not document 401"
