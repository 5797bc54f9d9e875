"""The bus is the only way onto NATS: no service module touches the raw client.

Services reach NATS through chorus_common.bus — envelopes (publish, subscribe),
declared topics, typed buckets, stream reads — so that encoding, signatures,
errors and metrics are the same everywhere. This reads every module under
``services/*/src`` and fails on a raw connection or JetStream use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCES = sorted((REPO / "services").glob("*/src/**/*.py"))
#: attributes of a Bus that are the raw connection (chorus_common's own modules only)
RAW = {"nc", "js", "client", "jetstream"}
#: nats modules a service may import: names of types it receives, nothing that connects
TYPE_ONLY = {"nats.aio.msg", "nats.aio.subscription", "nats.micro.request", "nats.js.api"}


def _raw_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in RAW:
            owner = ast.unparse(node.value)
            if owner == "bus" or owner.endswith((".bus", "_bus")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "nats" or alias.name.startswith("nats."):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = node.module
            if (module == "nats" or module.startswith("nats.")) and module not in TYPE_ONLY:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: from {module} import …")
    return found


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 40


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO / "services")))
def test_no_service_module_touches_the_raw_nats_client(path: Path) -> None:
    assert _raw_uses(path) == []
