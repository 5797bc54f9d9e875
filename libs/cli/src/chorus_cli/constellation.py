"""The local constellation of `chorus up`: embedded NATS, every service once, three DHT nodes.

Kept apart from the command-line parsing so the end-to-end tests run exactly
what a user runs.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from chorus_common.natsserver import NatsServer, free_port, port_is_free
from chorus_common.processes import SERVICE_MODULES, ServiceProcess, preload_service_stack

DEFAULT_NATS_PORT = 4222
#: first HTTP port; services take consecutive ports from here in SERVICE_MODULES order.
DEFAULT_PORT_BASE = 8700
DHT_NODES = 3
STATE_FILE = "up.json"


class PortTakenError(Exception):
    """A port the user asked for explicitly is in use."""


@dataclass
class Instance:
    name: str
    service: str
    port: int


def plan_instances(port_base: int, *, explicit: bool) -> tuple[list[Instance], list[str]]:
    """Assign ports; a taken default port moves to a free one, a taken explicit one is an error."""
    notes: list[str] = []
    instances: list[Instance] = []
    port = port_base
    for service in SERVICE_MODULES:
        names = [f"dht-{i + 1}" for i in range(DHT_NODES)] if service == "dht" else [service]
        for name in names:
            chosen = port
            if not port_is_free(chosen):
                if explicit:
                    raise PortTakenError(
                        f"port {chosen} (for {name}) is already in use; "
                        f"choose another range with --port-base"
                    )
                chosen = free_port()
                notes.append(
                    f"port {port} is taken; {name} uses {chosen} (set --port-base to choose)"
                )
            instances.append(Instance(name, service, chosen))
            port += 1
    return instances, notes


@dataclass
class Constellation:
    data_dir: Path
    nats_url: str | None = None
    nats_port: int | None = None
    port_base: int | None = None
    sync_always: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    #: environment for the instances of one service, by service name (e.g. its own NATS
    #: user and password); applied after ``extra_env``
    per_service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: fork the services from this process after importing their shared stack once
    #: (`chorus up`), instead of exec'ing nine interpreters that each import it
    fork: bool = False
    nats: NatsServer | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    admin_token: str = ""
    license_note: str = ""

    def start_nats(self) -> str:
        if self.nats_url:
            return self.nats_url
        port = self.nats_port if self.nats_port is not None else DEFAULT_NATS_PORT
        if not port_is_free(port):
            if self.nats_port is not None:
                raise PortTakenError(
                    f"NATS port {port} is already in use; choose another with --nats-port, "
                    f"or use that server with --nats-url nats://127.0.0.1:{port}"
                )
            chosen = free_port()
            self.notes.append(
                f"port {port} is taken (another NATS?); the embedded NATS uses {chosen} "
                f"(set --nats-port to choose, or --nats-url to use an existing server)"
            )
            port = chosen
        self.nats = NatsServer(
            store_dir=self.data_dir / "nats",
            port=port,
            sync_always=self.sync_always,
            server_name="chorus-up",
        ).start()
        self.nats_url = self.nats.url
        return self.nats_url

    def start_services(self) -> list[ServiceProcess]:
        explicit = self.port_base is not None
        instances, notes = plan_instances(self.port_base or DEFAULT_PORT_BASE, explicit=explicit)
        self.notes.extend(notes)
        token_file = self.data_dir / "admin-token"
        if token_file.exists():
            self.admin_token = token_file.read_text().strip()
        else:
            self.admin_token = secrets.token_urlsafe(24)
            token_file.write_text(self.admin_token + "\n")
            token_file.chmod(0o600)
        assert self.nats_url is not None
        license_env = self._development_license()
        if self.fork:
            preload_service_stack()
        dht_url = next(
            (f"http://127.0.0.1:{i.port}" for i in instances if i.service == "dht"), None
        )
        for inst in instances:
            env = {
                "CHORUS_NATS_URL": self.nats_url,
                "CHORUS_NODE_ID": inst.name,
                "CHORUS_DATA_DIR": str(self.data_dir / inst.name),
                "CHORUS_ADMIN_TOKEN": self.admin_token,
                "CHORUS_HEALTH_INTERVAL_SECONDS": "5",
                **(
                    license_env
                    if inst.service == "licensing"
                    else {"CHORUS_LICENSE_REQUIRED": "true"}
                ),
                **({"CHORUS_HAP_DHT_URL": dht_url} if inst.service == "hap" and dht_url else {}),
                **self.extra_env,
                **self.per_service_env.get(inst.service, {}),
            }
            proc = ServiceProcess(
                instance=inst.name,
                service=inst.service,
                port=inst.port,
                env=env,
                log_path=self.data_dir / "logs" / f"{inst.name}.log",
                fork=self.fork,
            )
            self.processes.append(proc.start())
        self.write_state()
        return self.processes

    def _development_license(self) -> dict[str, str]:
        """A local issuer and license, so the constellation runs licensed out of the box."""
        from chorus_licensing.issuing import development_license

        issued = development_license(self.data_dir / "license", cluster_id="local")
        self.license_note = (
            f"development license {issued.license.license_id} ({issued.license.seats} seats, "
            f"until {issued.license.expires_at:%Y-%m-%d}) in {issued.license_file}"
        )
        return {
            "CHORUS_LICENSE_FILE": str(issued.license_file),
            "CHORUS_LICENSE_ISSUER_KEY": str(issued.issuer_public_key_file),
        }

    def write_state(self) -> None:
        state = {
            "started_at": time.time(),
            "nats_url": self.nats_url,
            "services": [
                {
                    "name": p.instance,
                    "service": p.service,
                    "url": p.url,
                    "pid": p.proc.pid if p.proc else None,
                }
                for p in self.processes
            ],
        }
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every service (they drain in parallel), then NATS; nothing is left running."""
        for proc in self.processes:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            proc.terminate(timeout=max(0.1, deadline - time.monotonic()))
        if self.nats is not None:
            self.nats.stop()
        state = self.data_dir / STATE_FILE
        state.unlink(missing_ok=True)


def read_state(data_dir: Path) -> dict[str, object] | None:
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    data: dict[str, object] = json.loads(path.read_text())
    return data
