"""Service processes: how `chorus up` and the end-to-end tests run the constellation.

Services run as separate ``python -m`` processes (as in production), each in
its own session so a stray child never outlives the run.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chorus_common.natsserver import wait_stopped

#: service name → python module; the order is the start order of `chorus up`.
SERVICE_MODULES: dict[str, str] = {
    "licensing": "chorus_licensing",
    "election": "chorus_election",
    "pubsub-gateway": "chorus_gateway",
    "dht": "chorus_dht",
    "coordinator": "chorus_coordinator",
    "backbeat": "chorus_backbeat",
    "hap": "chorus_hap",
}


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when its parent dies (even by SIGKILL), so no
    service outlives the `chorus up` or test that started it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the parent's own clean-up has to do
        pass


@dataclass
class ServiceProcess:
    """One running service: its instance name, port, environment and log file."""

    instance: str
    service: str
    port: int
    env: dict[str, str]
    log_path: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)

    @property
    def module(self) -> str:
        return SERVICE_MODULES[self.service]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env,
            "CHORUS_HTTP_PORT": str(self.port),
            "CHORUS_HTTP_HOST": self.host,
        }
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
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
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
