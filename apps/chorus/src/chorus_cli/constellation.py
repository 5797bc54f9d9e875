"""The local constellation of `chorus up`: embedded NATS (one node or a 3-node cluster), the services.

Light (the default): every service once, three DHT nodes. ``ha``: the Helm
chart's default replica counts (``chorus_cli.roster.HA_REPLICAS``).
``cluster``: a 3-node NATS JetStream cluster with streams and KV at R3.
Kept apart from the command-line parsing so the end-to-end tests run exactly
what a user runs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from chorus_cli.roster import HA_REPLICAS, LIGHT_REPLICAS, SERVICE_MODULES, replicas
from chorus_cli.supervision import RestartPolicy, Supervisor
from chorus_common.errors import ConfigError
from chorus_common.natsserver import NatsCluster, NatsServer, free_port, port_is_free
from chorus_common.processes import ServiceProcess, preload_service_stack

DEFAULT_NATS_PORT = 4222
#: first HTTP port; instances take consecutive ports from here in start order.
DEFAULT_PORT_BASE = 8700
#: members of the ``cluster`` NATS; streams and KV buckets get this many replicas
CLUSTER_SIZE = 3
STATE_FILE = "up.json"


class PortTakenError(Exception):
    """A port the user asked for explicitly is in use."""


@dataclass
class Instance:
    name: str
    service: str
    port: int


def plan_instances(
    port_base: int, *, explicit: bool, counts: dict[str, int] | None = None
) -> tuple[list[Instance], list[str]]:
    """Name the instances of ``counts`` (default: the light shape) and give each a port,
    consecutive from ``port_base``; a taken default port moves to a free one, a taken
    explicit one is an error."""
    notes: list[str] = []
    instances: list[Instance] = []
    port = port_base
    for replica in replicas(counts or LIGHT_REPLICAS):
        chosen = port
        if not port_is_free(chosen):
            if explicit:
                raise PortTakenError(
                    f"port {chosen} (for {replica.name}) is already in use; "
                    f"choose another range with --port-base"
                )
            chosen = free_port()
            notes.append(
                f"port {port} is taken; {replica.name} uses {chosen} (set --port-base to choose)"
            )
        instances.append(Instance(replica.name, replica.service, chosen))
        port += 1
    return instances, notes


@dataclass
class Constellation:
    """NATS and the service processes of one `chorus up`, started and stopped together.

    ``start()`` (or ``start_nats()`` then ``start_services()``) brings everything up
    without waiting for readiness; ``wait_ready()`` waits; ``supervise()`` returns the
    ``Supervisor`` that restarts crashed services (`chorus up` ticks it); ``stop()``
    stops every service gracefully, then NATS, and removes the state file.
    """

    data_dir: Path
    nats_url: str | None = None
    #: client port of the embedded NATS (of its first member with ``cluster``, the
    #: others take the next ones); default 4222, a taken default moves to a free port
    nats_port: int | None = None
    port_base: int | None = None
    sync_always: bool = True
    #: the Helm chart's default shape (HA_REPLICAS) instead of the light one
    ha: bool = False
    #: a 3-node NATS JetStream cluster (streams and KV at R3) instead of one server
    cluster: bool = False
    #: replicas per service, overriding ``ha`` (keys and order as in HA_REPLICAS)
    counts: dict[str, int] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: environment for the instances of one service, by service name (e.g. its own NATS
    #: user and password); applied after ``extra_env``
    per_service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: fork the services from this process after importing their shared stack once
    #: (`chorus up`), instead of exec'ing an interpreter per service that each import it
    fork: bool = False
    #: the embedded single server (None with ``cluster`` or ``nats_url``)
    nats: NatsServer | None = None
    #: the embedded cluster (None without ``cluster``)
    nats_cluster: NatsCluster | None = None
    #: every service process, in start order
    processes: list[ServiceProcess] = field(default_factory=list)
    supervisor: Supervisor | None = None
    notes: list[str] = field(default_factory=list)
    admin_token: str = ""
    #: a token with the read scope only (CHORUS_READ_TOKENS): dashboards, scripts, browsers
    read_token: str = ""
    license_note: str = ""
    started_at: float = field(default_factory=time.time)

    @property
    def shape(self) -> dict[str, int]:
        """Replicas per service of this constellation."""
        if self.counts is not None:
            return dict(self.counts)
        return dict(HA_REPLICAS if self.ha else LIGHT_REPLICAS)

    @property
    def js_replicas(self) -> int:
        return CLUSTER_SIZE if self.cluster else 1

    @property
    def by_name(self) -> dict[str, ServiceProcess]:
        """The processes by instance name (``election-2``, ``dht-1``, ``licensing``…)."""
        return {p.instance: p for p in self.processes}

    def process(self, instance: str) -> ServiceProcess:
        try:
            return self.by_name[instance]
        except KeyError:
            raise KeyError(
                f"no instance {instance!r}; instances: {', '.join(self.by_name)}"
            ) from None

    def instances(self, service: str) -> list[ServiceProcess]:
        """The processes of one service (``election`` → election-1, -2, -3)."""
        return [p for p in self.processes if p.service == service]

    @property
    def nats_servers(self) -> list[NatsServer]:
        """The embedded NATS server(s): one, the cluster's members, or none (``nats_url``)."""
        if self.nats_cluster is not None:
            return list(self.nats_cluster.servers)
        return [self.nats] if self.nats is not None else []

    def start(self) -> Constellation:
        self.start_nats()
        self.start_services()
        return self

    def _nats_ports(self, count: int) -> list[int]:
        base = self.nats_port if self.nats_port is not None else DEFAULT_NATS_PORT
        ports: list[int] = []
        for port in range(base, base + count):
            if port_is_free(port):
                ports.append(port)
                continue
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
            ports.append(chosen)
        return ports

    def start_nats(self) -> str:
        if self.cluster and self.nats_url:
            raise ConfigError(
                "--cluster starts its own 3-node NATS and cannot be combined with --nats-url "
                "(to use your own cluster, give --nats-url and set CHORUS_JS_REPLICAS=3)"
            )
        if self.nats_url:
            return self.nats_url
        if self.cluster:
            self.nats_cluster = NatsCluster(
                self.data_dir / "nats-cluster",
                size=CLUSTER_SIZE,
                name="chorus-up",
                sync_always=self.sync_always,
                ports=self._nats_ports(CLUSTER_SIZE),
            )
            try:
                self.nats_cluster.start()
            except Exception:
                self.nats_cluster.kill()
                raise
            self.nats_url = self.nats_cluster.url
            return self.nats_url
        self.nats = NatsServer(
            store_dir=self.data_dir / "nats",
            port=self._nats_ports(1)[0],
            sync_always=self.sync_always,
            server_name="chorus-up",
        ).start()
        self.nats_url = self.nats.url
        return self.nats_url

    def start_services(self) -> list[ServiceProcess]:
        explicit = self.port_base is not None
        instances, notes = plan_instances(
            self.port_base or DEFAULT_PORT_BASE, explicit=explicit, counts=self.shape
        )
        self.notes.extend(notes)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = self._token("admin-token")
        self.read_token = self._token("read-token")
        assert self.nats_url is not None
        license_env = self._development_license(
            seats_needed=sum(1 for i in instances if i.service != "licensing")
        )
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
                "CHORUS_READ_TOKENS": self.read_token,
                "CHORUS_HEALTH_INTERVAL_SECONDS": "5",
                **({"CHORUS_JS_REPLICAS": str(self.js_replicas)} if self.cluster else {}),
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
                module=SERVICE_MODULES[inst.service],
                port=inst.port,
                env=env,
                log_path=self.data_dir / "logs" / f"{inst.name}.log",
                fork=self.fork,
            )
            self.processes.append(proc.start())
        self.write_state()
        return self.processes

    def _token(self, name: str) -> str:
        """A token kept in the data dir (0600), so a restart keeps what clients hold."""
        path = self.data_dir / name
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(24)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    def enrolment_token(self, ttl_seconds: float = 24 * 3600.0) -> str:
        """A fresh one-time enrolment token from a gateway (an agent enrols with it once)."""
        import httpx

        gateway = next(iter(self.instances("pubsub-gateway")), None)
        if gateway is None:
            raise ConfigError("no pubsub-gateway runs here, so agents cannot enrol")
        resp = httpx.post(
            f"http://127.0.0.1:{gateway.port}/v1/enrolment-tokens",
            json={"ttl_seconds": ttl_seconds},
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10.0,
        )
        resp.raise_for_status()
        return str(resp.json()["token"])

    def _development_license(self, seats_needed: int) -> dict[str, str]:
        """A local issuer and license, so the constellation runs licensed out of the box."""
        from chorus_licensing.issuing import development_license

        issued = development_license(self.data_dir / "license", cluster_id="local")
        seats = issued.license.seats
        self.license_note = (
            f"development license {issued.license.license_id} ({seats} seats, "
            f"until {issued.license.expires_at:%Y-%m-%d}) in {issued.license_file}"
        )
        if seats < seats_needed:
            self.notes.append(
                f"the development license has {seats} seats but {seats_needed} services "
                f"need one; some will stay unlicensed (not ready)"
            )
        return {
            "CHORUS_LICENSE_FILE": str(issued.license_file),
            "CHORUS_LICENSE_ISSUER_KEY": str(issued.issuer_public_key_file),
        }

    def supervise(self, policy: RestartPolicy | None = None) -> Supervisor:
        """Restart services that die (see ``chorus_cli.supervision``); tick the result."""
        self.supervisor = Supervisor(self.processes, policy, on_change=self.write_state)
        return self.supervisor

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Every service ready, or an error naming the first that exited or timed out."""
        import asyncio

        await asyncio.gather(*(p.wait_ready(timeout) for p in self.processes))

    def write_state(self) -> None:
        """up.json, which `chorus status`, `chorus tail` and `chorus hap` read; written
        whole to a temporary file and renamed, so a reader never sees half of it."""
        services = []
        for p in self.processes:
            row: dict[str, object] = {
                "name": p.instance,
                "service": p.service,
                "url": p.url,
                "pid": p.proc.pid if p.proc and p.running else None,
                "log": str(p.log_path),
            }
            if self.supervisor is not None:
                row.update(self.supervisor.state(p.instance))
            services.append(row)
        state = {
            "started_at": self.started_at,
            "pid": os.getpid(),
            "nats_url": self.nats_url,
            "shape": "custom" if self.counts is not None else "ha" if self.ha else "light",
            "cluster": self.cluster,
            "js_replicas": self.js_replicas,
            "nats_pids": [s.proc.pid for s in self.nats_servers if s.proc is not None],
            "services": services,
        }
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every service (they drain in parallel), then NATS; nothing is left running."""
        if self.supervisor is not None:
            self.supervisor.stop()
        for proc in self.processes:
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            proc.terminate(timeout=max(0.1, deadline - time.monotonic()))
        if self.nats_cluster is not None:
            self.nats_cluster.stop()
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
