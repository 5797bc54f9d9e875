"""A constellation to break: the shape the chart ships, on a 3-node NATS cluster (R3).

Every service runs as a process in the replica counts of the Helm chart's
defaults (``chorus_cli.roster.HA_REPLICAS``), licensing required, real
unpinned election scores. Faults are the ones operators meet: SIGKILL then
restart, SIGSTOP then SIGCONT (a long GC pause, a frozen VM), SIGTERM then
restart (a rolling deploy). One fault at a time, so a quorum of NATS nodes and
R−1 DHT copies always survive, which is the failure budget the design promises
to absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chorus_cli.roster import HA_REPLICAS, SERVICE_MODULES, replicas
from chorus_common.natsserver import NatsCluster, NatsServer
from chorus_common.processes import ServiceProcess

__all__ = ["ChaosConstellation", "Fault"]

ADMIN_TOKEN = "chaos-admin-token"

#: instance → service: the chart's default replica counts (three election replicas, two
#: gateways, coordinators and backbeat replicas, three DHT nodes, licensing, HAP)
INSTANCES: dict[str, str] = {r.name: r.service for r in replicas(HA_REPLICAS)}

#: fast timings, so a minute of chaos sees many failovers and repairs
ENV: dict[str, str] = {
    "CHORUS_JS_REPLICAS": "3",
    "CHORUS_ADMIN_TOKEN": ADMIN_TOKEN,
    "CHORUS_LOG_LEVEL": "INFO",
    "CHORUS_HEALTH_INTERVAL_SECONDS": "0.5",
    "CHORUS_DHT_ANNOUNCE_INTERVAL_SECONDS": "0.5",
    "CHORUS_DHT_REPAIR_INTERVAL_SECONDS": "1.0",
    "CHORUS_DHT_SCRUB_INTERVAL_SECONDS": "5",
    "CHORUS_COORDINATOR_CLAIM_TTL_SECONDS": "5",
    "CHORUS_COORDINATOR_ASSIGN_INTERVAL_SECONDS": "0.3",
    "CHORUS_GATEWAY_RATE_PER_SECOND": "100000",
    "CHORUS_GATEWAY_RATE_BURST": "100000",
}


@dataclass(frozen=True)
class Fault:
    """One injected fault, for the report: what, on whom, when, for how long."""

    action: str
    target: str
    at: float
    seconds: float


@dataclass
class ChaosConstellation:
    base: Path
    cluster: NatsCluster = field(init=False)
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    admin_token: str = ADMIN_TOKEN
    replicas: int = 3

    def __post_init__(self) -> None:
        self.cluster = NatsCluster(self.base / "nats")

    @property
    def nats_url(self) -> str:
        return self.cluster.url

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> ChaosConstellation:
        self.cluster.start()
        license_env = self._license()
        for name, service in INSTANCES.items():
            self.procs[name] = ServiceProcess(
                instance=name,
                service=service,
                module=SERVICE_MODULES[service],
                port=0,  # picked at start, and again should it be taken first
                env={
                    **ENV,
                    "CHORUS_NATS_URL": self.cluster.url,
                    "CHORUS_NODE_ID": name,
                    "CHORUS_DATA_DIR": str(self.base / name),
                    **(
                        license_env
                        if service == "licensing"
                        else {"CHORUS_LICENSE_REQUIRED": "true"}
                    ),
                },
                log_path=self.base / "logs" / f"{name}.log",
            ).start()
        return self

    def _license(self) -> dict[str, str]:
        """Issue a license as an operator does, with the `chorus-license` command."""
        folder = self.base / "license"
        folder.mkdir(parents=True, exist_ok=True)
        command = str(Path(sys.executable).with_name("chorus-license"))
        key, lic = folder / "issuer.key", folder / "license.json"
        subprocess.run([command, "keygen", "--out", str(key)], check=True, capture_output=True)
        subprocess.run(
            [
                *(command, "sign", "--issuer-key", str(key), "--customer", "chaos"),
                *("--cluster", "local", "--seats", "32", "--days", "1", "--out", str(lic)),
            ],
            check=True,
            capture_output=True,
        )
        return {
            "CHORUS_LICENSE_FILE": str(lic),
            "CHORUS_LICENSE_ISSUER_KEY": str(key.with_suffix(".pub")),
        }

    async def wait_ready(self, timeout: float = 60.0) -> None:
        await asyncio.gather(*(p.wait_ready(timeout) for p in self.procs.values()))

    def instances(self, service: str) -> list[tuple[str, str]]:
        """(name, URL) of the running instances of one service."""
        return [(n, p.url) for n, p in self.procs.items() if p.service == service and p.running]

    def urls(self, service: str) -> list[str]:
        return [url for _, url in self.instances(service)]

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.resume()
            proc.kill()
        for server in self.cluster.servers:
            server.resume()
        self.cluster.kill()

    # -- faults ----------------------------------------------------------------------

    def _targets(self) -> list[str]:
        return [*self.procs, *(s.server_name or "" for s in self.cluster.servers)]

    def _server(self, name: str) -> NatsServer | None:
        return next((s for s in self.cluster.servers if s.server_name == name), None)

    async def inject(self, rng: random.Random, max_seconds: float = 3.0) -> Fault:
        """Break one random target for a random while, then bring it back."""
        target = rng.choice(self._targets())
        action = rng.choice(("kill", "pause", "term"))
        seconds = rng.uniform(0.3, max_seconds)
        fault = Fault(action, target, time.time(), round(seconds, 2))
        self.faults.append(fault)
        server = self._server(target)
        victim: NatsServer | ServiceProcess = server if server is not None else self.procs[target]
        if action == "pause":
            victim.pause()
            await asyncio.sleep(seconds)
            victim.resume()
            return fault
        if action == "kill":
            await asyncio.to_thread(victim.kill)
        elif server is not None:
            await asyncio.to_thread(server.stop)
        else:
            await asyncio.to_thread(self.procs[target].terminate, 10.0)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(victim.start)
        return fault

    async def heal(self, timeout: float = 60.0) -> None:
        """Everything running and ready again, as after an operator's recovery."""
        for server in self.cluster.servers:
            server.resume()
            if not server.running:
                await asyncio.to_thread(server.start)
        for proc in self.procs.values():
            proc.resume()
            if not proc.running:
                proc.start()
        await self.wait_ready(timeout)

    def log_tails(self, chars: int = 1500) -> str:
        parts = []
        for name, proc in self.procs.items():
            with contextlib.suppress(Exception):
                parts.append(f"--- {name}\n{proc.log_tail(chars)}")
        return "\n".join(parts)
