"""Service processes: how `chorus up` and the end-to-end tests run the constellation.

Services run as separate processes (as in production), each in its own session
so a stray child never outlives the run. Tests exec a fresh ``python -m`` per
service; `chorus up` instead forks each service from its own process after
importing the stack every service shares once (see ``preload_service_stack``).

Which services exist is not this library's to know: the application's roster
(``chorus_cli.roster``) names each service's module, and a ServiceProcess given
only a service name finds its module among the ``chorus.services`` entry points
every service package declares (``pubsub-gateway = "chorus_gateway"``).
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import importlib
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import NoReturn, Protocol

import httpx

from chorus_common.natsserver import free_port, wait_stopped

__all__ = [
    "SERVICE_ENTRY_POINTS",
    "ChildProcess",
    "ForkedProcess",
    "ServiceProcess",
    "die_with_parent",
    "installed_services",
    "preload_service_stack",
    "service_module",
]

#: the entry-point group in which each service package names its module
#: (``[project.entry-points."chorus.services"]`` in its pyproject.toml)
SERVICE_ENTRY_POINTS = "chorus.services"


@cache
def installed_services() -> dict[str, str]:
    """Service name → python module, for every installed package declaring one."""
    return {ep.name: ep.value for ep in entry_points(group=SERVICE_ENTRY_POINTS)}


#: how often a service whose picked port was taken is started again on another
PORT_RETRIES = 3


def service_module(service: str) -> str:
    """The python module of ``service``, from the ``chorus.services`` entry points."""
    try:
        return installed_services()[service]
    except KeyError:
        known = ", ".join(sorted(installed_services())) or "none"
        raise LookupError(f"unknown service {service!r} (installed: {known})") from None


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when its parent dies (even by SIGKILL), so no
    service outlives the `chorus up` or test that started it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the parent's own clean-up has to do
        pass


#: what every service imports before its own code: FastAPI, uvicorn, pydantic, nats-py,
#: prometheus_client, OpenTelemetry and chorus_common. Importing it is about 1 s of CPU per
#: process, so on two cores nine exec'd services spent most of `chorus up` importing.
SERVICE_STACK = "chorus_common.service"


def preload_service_stack() -> None:
    """Import the shared stack once in this process, so services forked from it skip it."""
    importlib.import_module(SERVICE_STACK)


class ChildProcess(Protocol):
    """The part of ``subprocess.Popen`` a ServiceProcess uses, whichever way it started."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


class ForkedProcess:
    """A service forked from this process: Popen's poll/wait/send_signal over ``waitpid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere; its status is gone
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


def _name_process(name: str) -> None:
    """Set the name `ps -e` and `top` show (Linux keeps 15 bytes of it)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass


def _run_forked_service(name: str, module: str, env: dict[str, str], log_path: Path) -> NoReturn:
    """The child side of a fork: become ``python -m module`` as exec would have made it.

    It gets its own session, environment, log file and default signal handlers, drops
    the parent's exit hooks, runs the module as ``__main__`` and exits with its status,
    without ever returning into the parent's code.
    """
    code = 1
    try:
        os.setsid()
        die_with_parent()
        _name_process(name)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        # forked from inside an event loop, the parent's loop would still look like this
        # thread's running loop, and its signal wake-up socket would get this child's signals
        asyncio._set_running_loop(None)
        signal.set_wakeup_fd(-1)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        os.environ.clear()
        os.environ.update(env)
        atexit._clear()
        sys.argv = [module]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:  # as the interpreter maps it: None is 0, a message is 1
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


@dataclass
class ServiceProcess:
    """One running service: its instance name, port, environment and log file.

    ``port=0`` picks a free port at start and, should something take it before the
    service binds it (a free port is only free when it was looked at: a client socket
    of any process may get it next), starts the service again on another, up to
    :data:`PORT_RETRIES` times.
    """

    instance: str
    service: str
    port: int
    env: dict[str, str]
    log_path: Path
    host: str = "127.0.0.1"
    #: fork from this process instead of exec'ing a new interpreter; pays off once
    #: ``preload_service_stack`` ran here, and only while this process has no other
    #: thread (a lock held by another thread would stay locked in the child forever)
    fork: bool = False
    proc: ChildProcess | None = None
    started_at: float = field(default=0.0)
    #: the python module run as ``python -m``; empty: the service's ``chorus.services``
    #: entry point (the application's roster passes it)
    module: str = ""

    def __post_init__(self) -> None:
        if not self.module:
            self.module = service_module(self.service)
        self._picks_port = self.port == 0
        self._port_retries = 0

    def _port_was_taken(self) -> bool:
        """Whether the service died because its port was taken, and was started again."""
        if not self._picks_port or self._port_retries >= PORT_RETRIES:
            return False
        if "address already in use" not in self.log_tail():
            return False
        self._port_retries += 1
        self.start()
        return True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        if self._picks_port:
            self.port = free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env,
            "CHORUS_HTTP_PORT": str(self.port),
            "CHORUS_HTTP_HOST": self.host,
        }
        if self.fork and threading.active_count() == 1:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_forked_service(self.instance, self.module, env, self.log_path)
            self.proc = ForkedProcess(pid)
            self.started_at = time.monotonic()
            return self
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        self.started_at = time.monotonic()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def is_ready(self, timeout: float = 1.0) -> bool:
        if not self.running:
            self._port_was_taken()
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running and not self._port_was_taken():
                    raise RuntimeError(
                        f"{self.instance} exited with code {self.exit_code}:\n{self.log_tail()}"
                    )
                try:
                    if (await client.get(f"{self.url}/health/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.instance} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM and wait; returns seconds taken, killing the process if it overruns."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        if self.proc is not None:
            wait_stopped(self.proc.pid)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
