"""`chorus up` as a user runs it: everything ready, status, tail, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_common.natsserver import NatsServer

CHORUS = str(Path(sys.executable).parent / "chorus")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


class _Output:
    """Collects a process's output on a thread so the test can wait for a line with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines):
                return list(self.lines)
            time.sleep(0.05)
        joined = "\n".join(self.lines)
        raise AssertionError(f"{needle!r} not printed within {timeout}s; output:\n{joined}")


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    output = getattr(proc, "_chorus_output", None)
    if output is None:
        output = _Output(proc)
        proc._chorus_output = output  # type: ignore[attr-defined]
    return output.wait_for(needle, timeout)


@pytest.mark.slow
def test_chorus_up_ready_status_tail_and_clean_stop(tmp_path: Path) -> None:
    data = tmp_path / "up"
    env = {**os.environ, "COLUMNS": "200"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [CHORUS, "up", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output = _wait_for_line(proc, "services ready in", timeout=60)
        ready_after = time.monotonic() - started
        print(f"chorus up ready after {ready_after:.2f}s")
        text = "\n".join(output)
        assert "all 9 services ready" in text
        state = json.loads((data / "up.json").read_text())
        names = {s["name"] for s in state["services"]}
        assert names == {
            "licensing",
            "election",
            "pubsub-gateway",
            "dht-1",
            "dht-2",
            "dht-3",
            "coordinator",
            "backbeat",
            "hap",
        }
        pids = [s["pid"] for s in state["services"]]
        assert "development license" in text
        licensing = next(s["url"] for s in state["services"] if s["name"] == "licensing")
        license_status = httpx.get(f"{licensing}/v1/license", timeout=5).json()
        assert license_status["valid"] is True
        assert set(license_status["holders"]) == names - {
            "licensing"
        }  # every other service holds a seat

        status = subprocess.run(
            [CHORUS, "status", "--data-dir", str(data), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        rows = json.loads(status.stdout)
        assert len(rows) == 9 and all(r["ready"] for r in rows)

        # `chorus tail` shows an envelope published on the bus
        tail = subprocess.Popen(
            [CHORUS, "tail", "chorus.coord.>", "--data-dir", str(data), "--count", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        _wait_for_line(tail, "listening on", timeout=20)
        publish = subprocess.run(
            [sys.executable, "-c", _PUBLISH, state["nats_url"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert publish.returncode == 0, publish.stderr
        tail.wait(timeout=20)
        assert tail.returncode == 0
        out = "\n".join(tail._chorus_output.lines)  # type: ignore[attr-defined]
        assert "task_claim" in out and "from" in out and "agent-7" in out

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        assert proc.returncode == 0
        nats_pid_gone = not (data / "up.json").exists()
        assert nats_pid_gone
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), "a service outlived chorus up"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


_PUBLISH = """
import asyncio, sys
from chorus_common.bus import Bus
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope
async def main():
    bus = Bus(ChorusSettings(nats_url=sys.argv[1]), "publisher")
    await bus.connect(timeout=10)
    await bus.publish(Envelope(type="task_claim", sender="agent-7",
        payload={"task_id": "t-9", "repository": "chorus", "agent": "agent-7"}))
    await bus.close()
asyncio.run(main())
"""


def test_taken_nats_port_is_named_with_a_way_out(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [CHORUS, "up", "--data-dir", str(tmp_path), "--nats-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"NATS port {port} is already in use" in result.stdout + result.stderr
    assert "--nats-port" in result.stdout + result.stderr


def test_existing_nats_url_is_used(tmp_path: Path) -> None:
    """--nats-url skips the embedded server; services come up on the given bus."""
    server = NatsServer(store_dir=tmp_path / "ext").start()
    proc = subprocess.Popen(
        [CHORUS, "up", "--data-dir", str(tmp_path / "d"), "--nats-url", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = _wait_for_line(proc, "services ready in", timeout=60)
        assert any(server.url in line for line in lines)
        assert not (tmp_path / "d" / "nats").exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        server.kill()
