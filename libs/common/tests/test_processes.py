"""Forked service processes behave like exec'd ones: environment, log, name, exit status.

The fork happens in a fresh interpreter (as in `chorus up`), not in pytest's own
process, whose threads would make ServiceProcess fall back to exec.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, sys, time
from pathlib import Path
import httpx
from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ForkedProcess, ServiceProcess, preload_service_stack

base = Path(sys.argv[1])
nats = NatsServer(store_dir=base / "nats").start()
preload_service_stack()
out = {}
try:
    good = ServiceProcess(
        instance="dht-forked", service="dht", port=free_port(), fork=True,
        env={"CHORUS_NATS_URL": nats.url, "CHORUS_LICENSE_REQUIRED": "false", "CHORUS_NODE_ID": "dht-forked",
             "CHORUS_DATA_DIR": str(base / "dht"), "CHORUS_ADMIN_TOKEN": "t"},
        log_path=base / "dht.log",
    ).start()
    # a broken setting: the child says why on its log and exits 2, as `python -m` would
    bad = ServiceProcess(
        instance="dht-broken", service="dht", port=free_port(), fork=True,
        env={"CHORUS_NATS_URL": nats.url, "CHORUS_HEALTH_INTERVAL_SECONDS": "abc"},
        log_path=base / "broken.log",
    ).start()
    out["forked"] = isinstance(good.proc, ForkedProcess) and isinstance(bad.proc, ForkedProcess)
    out["broken_exit"] = bad.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not good.is_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    out["ready"] = good.is_ready()
    out["node"] = httpx.get(good.url + "/v1/nodes", timeout=5, headers={"Authorization": "Bearer t"}).json().get("self")
    out["comm"] = Path(f"/proc/{good.proc.pid}/comm").read_text().strip()
    out["session_leader"] = __import__("os").getsid(good.proc.pid) == good.proc.pid
    out["terminate_seconds"] = good.terminate(timeout=20)
    out["exit"] = good.exit_code
finally:
    nats.stop()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_forked_service_runs_like_an_execd_one(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["forked"] is True
    assert out["broken_exit"] == 2
    assert "CHORUS_HEALTH_INTERVAL_SECONDS='abc'" in (tmp_path / "broken.log").read_text()
    assert out["ready"] is True, (tmp_path / "dht.log").read_text()
    assert out["node"]["name"] == "dht-forked"  # its own CHORUS_NODE_ID
    assert out["comm"] == "dht-forked"  # what `ps -e` and `top` show
    assert out["session_leader"] is True  # a signal to `chorus up`'s group does not reach it
    assert out["exit"] == 0  # SIGTERM drains and exits cleanly, as an exec'd service does
    assert "dht ready on" in (tmp_path / "dht.log").read_text()


def test_a_picked_port_taken_before_the_service_binds_it_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """port=0: the port is picked at start; when another socket takes it first (the service
    exits with "address already in use"), the service is started on another one."""
    import socket
    import time

    from chorus_common import processes
    from chorus_common.natsserver import free_port, wait_for_port

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])
    monkeypatch.setattr(
        processes, "free_port", lambda host="127.0.0.1": next(picks, None) or free_port(host)
    )
    proc = processes.ServiceProcess(
        instance="election",
        service="election",
        port=0,
        env={"CHORUS_NATS_URL": "nats://127.0.0.1:1", "CHORUS_LICENSE_REQUIRED": "false"},
        log_path=tmp_path / "election.log",
    ).start()
    try:
        first = proc.port
        assert first == taken.getsockname()[1]
        deadline = time.monotonic() + 30
        while proc.port == first or not proc.running:  # is_ready notices and starts it again
            assert time.monotonic() < deadline, proc.log_tail()
            proc.is_ready()
            time.sleep(0.1)
        assert "address already in use" in proc.log_tail()
        wait_for_port("127.0.0.1", proc.port, 20)  # the service listens on its new port
    finally:
        proc.kill()
        taken.close()
