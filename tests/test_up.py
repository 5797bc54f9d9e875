"""`chorus up` as a user runs it: everything ready, status, tail, Ctrl-C leaves nothing behind.

Also the shape that ships (`--ha`, the chart's default replica counts, and `--cluster`,
a 3-node NATS at R3) and supervision: a killed service comes back, one that keeps
crashing is reported failed while the rest keep running.
"""

from __future__ import annotations

import json
import os
import random
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
import yaml

from chorus_cli.roster import CHART_KEYS, HA_REPLICAS, LIGHT_REPLICAS, replicas
from chorus_common.natsserver import NatsServer, port_is_free

CHORUS = str(Path(sys.executable).parent / "chorus")
ROOT = Path(__file__).resolve().parents[1]
HA_NAMES = [r.name for r in replicas(HA_REPLICAS)]


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
        with stream:  # closed at the end of the output: the pipe is not left to the collector
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
        reader = {"Authorization": f"Bearer {(data / 'read-token').read_text().strip()}"}
        license_status = httpx.get(f"{licensing}/v1/license", timeout=5, headers=reader).json()
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


def _free_range(count: int) -> int:
    """A first port with ``count`` consecutive free ports after it (others run `chorus up` too)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000)
        if all(port_is_free(p) for p in range(base, base + count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


class Up:
    """One `chorus up` subprocess, as a user started it, with what tests ask of it."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [CHORUS, "up", "--data-dir", str(data), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            start_new_session=True,
        )
        self.output = _Output(self.proc)

    def wait_for(self, needle: str, timeout: float) -> str:
        return "\n".join(self.output.wait_for(needle, timeout))

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data / "up.json").read_text())
        return data

    @property
    def reader(self) -> dict[str, str]:
        """Headers with the read token `chorus up` keeps in its data dir."""
        return {"Authorization": f"Bearer {(self.data / 'read-token').read_text().strip()}"}

    def service(self, name: str) -> dict[str, Any]:
        return next(s for s in self.state()["services"] if s["name"] == name)

    def status(self) -> tuple[int, list[dict[str, Any]]]:
        done = subprocess.run(
            [CHORUS, "status", "--data-dir", str(self.data), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, json.loads(done.stdout)

    def pids(self) -> list[int]:
        state = self.state()
        return [s["pid"] for s in state["services"] if s["pid"]] + list(state["nats_pids"])

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Stop it as a user does and check nothing it started is left running."""
        pids = self.pids()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        assert not (self.data / "up.json").exists()
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "a process outlived chorus up"
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


def test_ha_shape_is_the_charts_default_replica_counts() -> None:
    values = yaml.safe_load((ROOT / "deploy/helm/chorus/values.yaml").read_text())
    chart = {service: values["services"][key]["replicas"] for service, key in CHART_KEYS.items()}
    assert chart == HA_REPLICAS
    assert list(HA_REPLICAS) == list(LIGHT_REPLICAS)  # same services, same start order
    assert len(HA_NAMES) == 14
    assert [r.name for r in replicas(LIGHT_REPLICAS)] == [
        *("licensing", "election", "pubsub-gateway", "dht-1", "dht-2", "dht-3"),
        *("coordinator", "backbeat", "hap"),
    ]


@pytest.fixture(scope="module")
def ha_up(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One `chorus up --ha` for the tests below (each start costs seconds on two cores)."""
    up = Up(
        tmp_path_factory.mktemp("ha"),
        "--ha",
        *("--nats-port", str(_free_range(1)), "--port-base", str(_free_range(14))),
    )
    try:
        text = up.wait_for("services ready in", timeout=90)
        print(f"chorus up --ha ready after {time.monotonic() - up.started:.2f}s")
        assert "all 14 services ready" in text, text
        yield up
    finally:
        up.kill()


@pytest.mark.slow
def test_ha_runs_every_replica_of_the_chart_shape_licensed(ha_up: Up) -> None:
    state = ha_up.state()
    assert [s["name"] for s in state["services"]] == HA_NAMES
    assert state["shape"] == "ha" and state["js_replicas"] == 1
    ports = [int(s["url"].rsplit(":", 1)[1]) for s in state["services"]]
    assert ports == list(range(ports[0], ports[0] + 14))  # consecutive from --port-base

    code, rows = ha_up.status()
    assert code == 0, rows
    assert [r["name"] for r in rows] == HA_NAMES
    assert all(r["ready"] and r["state"] == "ready" and r["restarts"] == 0 for r in rows), rows

    licensing = ha_up.service("licensing")["url"]
    license_status = httpx.get(f"{licensing}/v1/license", timeout=5, headers=ha_up.reader).json()
    assert license_status["valid"] is True
    assert set(license_status["holders"]) == set(HA_NAMES) - {"licensing"}


def test_ha_runs_with_scoped_tokens_end_to_end(ha_up: Up) -> None:
    """Reads closed, an agent enrolled with the printed token, its token bound to it."""
    from chorus_common.envelopes import Envelope, MessageType
    from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
    from chorus_common.feeds import FeedWriter
    from chorus_common.signing import AgentKey

    read = {"Authorization": f"Bearer {(ha_up.data / 'read-token').read_text().strip()}"}
    admin = {"Authorization": f"Bearer {(ha_up.data / 'admin-token').read_text().strip()}"}
    enrolment = next(
        line.rsplit(" ", 1)[1]
        for line in ha_up.wait_for("enrolment token", timeout=10).splitlines()
        if "enrolment token" in line
    )
    coordinator = ha_up.service("coordinator-1")["url"]
    gw1, gw2 = (ha_up.service(f"pubsub-gateway-{i}")["url"] for i in (1, 2))
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{coordinator}/v1/tasks").status_code == 401
        assert http.get(f"{coordinator}/v1/tasks", headers=read).status_code == 200
        refused = http.post(f"{coordinator}/v1/tasks", headers=read, json={"title": "x"})
        assert refused.status_code == 403 and refused.json()["reason"] == "scope_missing"
        assert http.get(f"{gw2}/v1/stream", headers={}).status_code == 401

        key = AgentKey.generate()
        bearer = {"Authorization": f"Bearer {enrolment}"}
        ask = {"agent": "e2e-agent", "public_key": key.public_key}
        challenge = http.post(f"{gw1}/v1/enrolments/challenge", json=ask, headers=bearer)
        assert challenge.status_code == 201, challenge.text
        nonce = challenge.json()["challenge"]
        signed = key.sign(f"chorus-enrol\ne2e-agent\n{key.public_key}\n{nonce}".encode())
        enrolled = http.post(  # at the other replica: enrolment state is shared
            f"{gw2}/v1/enrolments",
            json={**ask, "challenge": nonce, "signature": signed},
            headers=bearer,
        )
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["scopes"] == ["publish", "read"]
        agent = {"Authorization": f"Bearer {enrolled.json()['token']}"}
        again = http.post(f"{gw1}/v1/enrolments/challenge", json=ask, headers=bearer)
        assert again.status_code == 401  # one agent, once

        writer = FeedWriter("e2e-agent", key)
        env = writer.seal(
            Envelope(
                type=MessageType.STATUS_UPDATE,
                sender="e2e-agent",
                payload=SAMPLE_PAYLOADS[MessageType.STATUS_UPDATE],
            )
        )
        body = env.model_dump(mode="json")
        published = http.post(f"{gw1}/v1/envelopes", json=body, headers=agent)
        assert published.status_code == 201, published.text
        as_other = {**body, "sender": "someone-else"}
        forged = http.post(f"{gw2}/v1/envelopes", json=as_other, headers=agent)
        assert forged.status_code == 403 and forged.json()["reason"] == "sender_mismatch"
        assert http.post(f"{gw1}/v1/envelopes", json=body, headers=read).status_code == 403

        revoked = http.delete(f"{gw1}/v1/agents/e2e-agent/tokens", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked"] == 1
        # every replica stops trusting it within its cache time (5 s)
        _until(
            lambda: http.get(f"{gw2}/v1/agents/e2e-agent", headers=agent).status_code == 401,
            10,
            "the revoked token refused by the other gateway",
        )


@pytest.mark.slow
def test_ha_election_replicas_agree_on_one_admin(ha_up: Up) -> None:
    urls = [ha_up.service(f"election-{i}")["url"] for i in (1, 2, 3)]

    def views() -> list[dict[str, Any]] | None:
        got = [httpx.get(f"{u}/v1/admin", timeout=2, headers=ha_up.reader).json() for u in urls]
        admins = {v["admin"] for v in got}
        return got if len(admins) == 1 and None not in admins else None

    got = _until(views, 30, "one admin seen by all three election replicas")
    assert sum(v["is_self"] for v in got) == 1
    assert got[0]["admin"] in {"election-1", "election-2", "election-3"}


@pytest.mark.slow
def test_a_killed_service_is_restarted_and_ready_again(ha_up: Up) -> None:
    victim = ha_up.service("coordinator-2")
    os.kill(victim["pid"], signal.SIGKILL)
    ha_up.wait_for("coordinator-2 exited (SIGKILL); restarting in 0.5s", timeout=10)

    def back() -> dict[str, Any] | None:
        row = ha_up.service("coordinator-2")
        return row if row["state"] == "ready" and row["restarts"] == 1 else None

    row = _until(back, 30, "coordinator-2 ready again after one restart")
    assert row["pid"] != victim["pid"] and row["last_exit"] == "SIGKILL"
    # forked again from the preloaded CLI, so named by its instance in `ps`, as at start
    assert Path(f"/proc/{row['pid']}/comm").read_text().strip() == "coordinator-2"
    code, rows = ha_up.status()
    assert code == 0, rows
    status_row = next(r for r in rows if r["name"] == "coordinator-2")
    assert status_row["restarts"] == 1 and status_row["last_exit"] == "SIGKILL"
    assert status_row["ready"] is True
    assert all(r["restarts"] == 0 for r in rows if r["name"] != "coordinator-2")


@pytest.mark.slow
def test_ha_stops_on_sigterm_leaving_nothing_running(ha_up: Up) -> None:
    assert ha_up.stop(signal.SIGTERM) == 0


@pytest.mark.slow
def test_ha_cluster_runs_three_nats_nodes_with_r3_streams(tmp_path: Path) -> None:
    up = Up(
        tmp_path / "hac",
        *("--ha", "--cluster"),
        *("--nats-port", str(_free_range(3)), "--port-base", str(_free_range(14))),
    )
    try:
        text = up.wait_for("services ready in", timeout=120)
        print(f"chorus up --ha --cluster ready after {time.monotonic() - up.started:.2f}s")
        assert "all 14 services ready" in text and "3-node cluster" in text, text
        state = up.state()
        assert state["cluster"] is True and state["js_replicas"] == 3
        assert len(state["nats_pids"]) == 3 and all(_alive(p) for p in state["nats_pids"])
        assert len(state["nats_url"].split(",")) == 3
        done = subprocess.run(
            [sys.executable, "-c", _STREAM_REPLICAS, state["nats_url"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        replicas_by_stream = json.loads(done.stdout)
        assert replicas_by_stream == {
            "CHORUS_EVENTS": [3, 2],
            "KV_chorus-election": [3, 2],
            "KV_chorus-leases": [3, 2],
        }
        # `chorus tail` follows the cluster's URL (every member, comma-separated)
        tail = subprocess.Popen(
            [CHORUS, "tail", "chorus.coord.>", "--data-dir", str(up.data), "--count", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _wait_for_line(tail, "listening on", timeout=20)
        publish = subprocess.run(
            [sys.executable, "-c", _PUBLISH, state["nats_url"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert publish.returncode == 0, publish.stderr
        assert tail.wait(timeout=20) == 0
        assert "task_claim" in "\n".join(tail._chorus_output.lines)  # type: ignore[attr-defined]
        assert up.stop(signal.SIGINT) == 0
    finally:
        up.kill()


_STREAM_REPLICAS = """
import asyncio, json, sys
import nats
async def main():
    nc = await nats.connect(sys.argv[1].split(","))
    js = nc.jetstream()
    out = {}
    for name in ("CHORUS_EVENTS", "KV_chorus-election", "KV_chorus-leases"):
        info = await js.stream_info(name)
        out[name] = [info.config.num_replicas, len(info.cluster.replicas or [])]
    await nc.close()
    print(json.dumps(out))
asyncio.run(main())
"""


@pytest.mark.slow
def test_a_service_that_keeps_crashing_is_failed_and_the_rest_keep_running(
    tmp_path: Path,
) -> None:
    # a user's mistake: a setting only backbeat reads, set to a value it refuses
    up = Up(
        tmp_path / "crash",
        *("--nats-port", str(_free_range(1)), "--port-base", str(_free_range(9))),
        env={"CHORUS_BACKBEAT_TEMPO_BPM": "0"},
    )
    try:
        text = up.wait_for("services ready in", timeout=90)
        assert "8 of 9 services ready" in text and "failed: backbeat" in text, text
        assert "backbeat failed: 5 exits within 60s (last: exit 2)" in text
        # its log tail says why, in the words of the service
        assert "CHORUS_BACKBEAT_TEMPO_BPM='0'" in text
        assert "backbeat exited (exit 2); restarting in 4.0s" in text  # 0.5, 1, 2, 4

        code, rows = up.status()
        assert code == 1
        by_name = {r["name"]: r for r in rows}
        assert by_name["backbeat"]["state"] == "failed" and by_name["backbeat"]["ready"] is False
        assert by_name["backbeat"]["restarts"] == 4
        assert by_name["backbeat"]["pid"] is None
        assert "5 exits within 60s" in by_name["backbeat"]["status"]
        others = [r for n, r in by_name.items() if n != "backbeat"]
        assert all(r["ready"] and r["state"] == "ready" for r in others), others
        table = subprocess.run(
            [CHORUS, "status", "--data-dir", str(up.data)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert table.returncode == 1 and "failed" in table.stdout
        assert up.stop(signal.SIGINT) == 1  # the run had a failed service
    finally:
        up.kill()
