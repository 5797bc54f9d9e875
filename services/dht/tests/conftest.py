"""What the DHT tests share: a sealed node served in process (test_sealed_reads,
test_sealed_writes) and groups of real node processes on one bus (test_cluster,
test_faults)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from chorus_common.natsserver import free_port
from chorus_common.processes import ServiceProcess
from chorus_common.sealed import RoleKeyPair
from chorus_common.testing import RequestRecorder, serve_in_process, wait_for
from chorus_dht import DhtService
from chorus_dht.settings import DhtSettings

ADMIN_TOKEN, READ_TOKEN = "test-admin-token", "test-read-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` every 0.1 s until it answers something true (returned), or fail."""
    return wait_for(cond, timeout, what, interval=0.1)


# -- one sealed node in process -------------------------------------------------------------


@dataclass
class SealedDht:
    """A DHT node on a real bus with reads behind :data:`READ_TOKEN`; ``recorder`` keeps
    every request it received, bodies included."""

    service: DhtService
    url: str
    recorder: RequestRecorder
    #: the role keys registered with :meth:`register`
    keys: dict[str, RoleKeyPair] = field(default_factory=dict)

    def received(self, secret: str) -> bool:
        """Whether ``secret`` reached the node anywhere in a request line or header."""
        return any(
            secret in r.path or any(secret in v for v in r.headers.values())
            for r in self.recorder.requests
        )

    async def stored_bytes(self) -> bytes:
        storage = self.service.node.storage
        assert storage is not None
        return json.dumps(await storage.all()).encode()

    async def register(self, keys: dict[str, RoleKeyPair]) -> None:
        """Register each role's public key with the node (admin token)."""
        async with httpx.AsyncClient(base_url=self.url, headers=ADMIN) as c:
            for role, key in keys.items():
                resp = await c.post(f"/v1/roles/{role}/keys", json={"public_key": key.public_text})
                assert resp.status_code == 201, resp.text
        self.keys.update(keys)


@asynccontextmanager
async def sealed_dht(
    make_settings: Callable[..., Any], tmp_path: Path, node_id: str, **settings: Any
) -> AsyncIterator[SealedDht]:
    """A :class:`SealedDht` named ``node_id`` (R = 1), served while the block runs."""
    service = DhtService(
        make_settings(
            DhtSettings,
            node_id=node_id,
            data_dir=tmp_path / "dht",
            dht_replication=1,
            public_read=False,
            read_tokens=READ_TOKEN,
            **settings,
        )
    )
    recorder = RequestRecorder().attach(service)
    async with serve_in_process(service) as url:
        yield SealedDht(service, url, recorder)


# -- node processes -------------------------------------------------------------------------


class DhtProcesses:
    """DHT node processes on one bus, each with its own data directory and port; a
    context manager that kills every one of them on the way out."""

    def __init__(
        self,
        nats_url: str,
        base: Path,
        names: tuple[str, ...],
        *,
        repair_interval: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.nats_url, self.base, self.names = nats_url, base, names
        self.repair_interval, self.env = repair_interval, env or {}
        self.ports = {n: free_port() for n in names}
        self.procs: dict[str, ServiceProcess] = {}

    def start(self, node: str) -> ServiceProcess:
        env = {
            "CHORUS_NATS_URL": self.nats_url,
            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
            "CHORUS_NODE_ID": node,
            "CHORUS_DATA_DIR": str(self.base / node),
            "CHORUS_ADMIN_TOKEN": ADMIN_TOKEN,
            "CHORUS_DHT_ANNOUNCE_INTERVAL_SECONDS": "0.3",
            "CHORUS_DHT_REPAIR_INTERVAL_SECONDS": self.repair_interval,
            "CHORUS_DHT_SCRUB_INTERVAL_SECONDS": "0.5",
            "CHORUS_HEALTH_INTERVAL_SECONDS": "0.5",
            **self.env,
        }
        proc = ServiceProcess(
            instance=node,
            service="dht",
            port=self.ports[node],
            env=env,
            log_path=self.base / f"{node}.log",
        ).start()
        self.procs[node] = proc
        return proc

    def up(self, *nodes: str) -> None:
        """Start ``nodes``, then wait until each is ready."""
        for node in nodes:
            self.start(node)
        for node in nodes:
            proc = self.procs[node]
            wait(proc.is_ready, 30, f"{node} ready:\n{proc.log_tail()}")

    def url(self, node: str) -> str:
        return self.procs[node].url

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
