"""Election processes for integration and fault tests.

Scores are real (measured, unpinned): a test that needs one node to win gives it
more capabilities (``CHORUS_ELECTION_CAPABILITIES``; each of the 5 wanted is
worth 0.04 of the total, against a challenge margin of 0.05), or asserts on
whoever wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_common.natsserver import free_port
from chorus_common.processes import ServiceProcess
from chorus_common.testing import wait_for

ADMIN = {"Authorization": "Bearer test-admin-token"}


class ElectionGroup:
    def __init__(self, nats_url: str, base: Path) -> None:
        self.nats_url = nats_url
        self.base = base
        self.procs: dict[str, ServiceProcess] = {}

    def start(self, node: str, capabilities: int = 0, **env: str) -> ServiceProcess:
        proc = ServiceProcess(
            instance=node,
            service="election",
            port=free_port(),
            env={
                "CHORUS_NATS_URL": self.nats_url,
                "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
                "CHORUS_NODE_ID": node,
                "CHORUS_ADMIN_TOKEN": "test-admin-token",
                "CHORUS_HEALTH_INTERVAL_SECONDS": "0.5",
                "CHORUS_DATA_DIR": str(self.base / node),
                "CHORUS_ELECTION_CAPABILITIES": ",".join(f"cap{i}" for i in range(capabilities)),
                "CHORUS_ELECTION_ACTIONS_LOG": str(self.base / f"{node}.actions"),
                **env,
            },
            log_path=self.base / f"{node}.log",
        ).start()
        self.procs[node] = proc
        return proc

    def view(self, node: str) -> dict[str, Any] | None:
        return self.get(node, "/v1/admin")

    def get(self, node: str, path: str) -> dict[str, Any] | None:
        try:
            resp = httpx.get(f"{self.procs[node].url}{path}", timeout=0.5, headers=ADMIN)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def metric(self, node: str, name: str, **labels: str) -> float:
        """One sample of this node's /metrics (0 when absent)."""
        text = httpx.get(f"{self.procs[node].url}/metrics", timeout=2).text
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def admins(self) -> dict[str, int]:
        """node → term, for every live participant that says it is the admin."""
        out = {}
        for node, proc in self.procs.items():
            if not proc.running:
                continue
            view = self.view(node)
            if view and view["is_self"]:
                out[node] = view["term"]
        return out

    def wait_admin(self, timeout: float = 15, not_in: tuple[str, ...] = ()) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            admins = {n: t for n, t in self.admins().items() if n not in not_in}
            if len(admins) == 1:
                node, term = next(iter(admins.items()))
                return node, term
            time.sleep(0.05)
        logs = "\n".join(f"--- {n}\n{p.log_tail(800)}" for n, p in self.procs.items())
        raise AssertionError(f"no single admin within {timeout}s: {self.admins()}\n{logs}")

    def action_log(self) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for node in self.procs:
            path = self.base / f"{node}.actions"
            lines = path.read_text().split("\n") if path.exists() else []
            out[node] = [
                (int(t), float(a)) for t, a in (line.split() for line in lines if line.strip())
            ]
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()


@pytest.fixture
def election_group(nats_server: Any, tmp_path: Path) -> Iterator[ElectionGroup]:
    group = ElectionGroup(nats_server.url, tmp_path)
    try:
        yield group
    finally:
        group.stop()


wait = wait_for
