"""BACKBEAT on a real bus: tempo, pulse failover, six phases, failures, overruns, drift, silence."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from chorus_common.backbeat import BeatFrame, Phase, Tracker
from chorus_common.bus import Bus
from chorus_common.natsserver import free_port
from chorus_common.processes import ServiceProcess
from chorus_common.testing import wait_until

TEMPO = 600.0  # ten beats a second, so a test sees many beats

ADMIN = {"Authorization": "Bearer test-admin-token"}


def start(nats_url: str, tmp_path: Path, node: str) -> ServiceProcess:
    return ServiceProcess(
        instance=node,
        service="backbeat",
        port=free_port(),
        env={
            "CHORUS_NATS_URL": nats_url,
            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
            "CHORUS_NODE_ID": node,
            "CHORUS_DATA_DIR": str(tmp_path / node),
            "CHORUS_BACKBEAT_TEMPO_BPM": str(TEMPO),
            "CHORUS_BACKBEAT_LEASE_TTL_SECONDS": "0.6",
            "CHORUS_BACKBEAT_SILENCE_BEATS": "10",
            "CHORUS_BACKBEAT_BAR_LENGTH": "20",
            "CHORUS_HEALTH_INTERVAL_SECONDS": "0.5",
            "CHORUS_ADMIN_TOKEN": "test-admin-token",
        },
        log_path=tmp_path / f"{node}.log",
    ).start()


@pytest.mark.slow
async def test_beat_failover_and_operation_telemetry(
    nats_url: str, tmp_path: Path, bus_client: Bus
) -> None:
    procs = {n: start(nats_url, tmp_path, n) for n in ("bb1", "bb2")}
    nc = await nats.connect(nats_url)
    frames: list[tuple[float, BeatFrame]] = []

    async def on_frame(msg: Any) -> None:
        frames.append((time.monotonic(), BeatFrame.model_validate_json(msg.data)))

    await nc.subscribe("chorus.backbeat.beat", cb=on_frame)
    try:
        for p in procs.values():
            await p.wait_ready(30)
        await wait_until(lambda: len(frames) > 5, timeout=15, message="beats")

        # tempo: frames over a 2 s window, within a tolerance derived from the tempo
        frames.clear()
        await asyncio.sleep(2.0)
        expected = 2.0 * TEMPO / 60
        assert abs(len(frames) - expected) <= 0.25 * expected + 2, len(frames)

        # kill the pulse leader: the other continues the index, no repeats, no going back
        pulses = {}
        for node, p in procs.items():
            pulses[node] = (await _get(p, "/v1/tempo"))["pulse"]
        leader = next(n for n, is_pulse in pulses.items() if is_pulse)
        before = frames[-1][1].beat_index
        procs[leader].kill()
        killed_at = time.monotonic()
        await wait_until(
            lambda: any(t > killed_at + 0.3 and f.beat_index > before for t, f in frames),
            timeout=15,
            message="the next leader pulses",
        )
        indices = [f.beat_index for _, f in frames]
        assert indices == sorted(indices) and len(indices) == len(set(indices))
        survivor = next(p for n, p in procs.items() if n != leader)
        assert (await _get(survivor, "/v1/tempo"))["pulse"] is True

        # operations through the tracker: six phases in order; a failure; an overrun
        tracker = Tracker(bus_client, "agent-ops")
        await tracker.start()
        async with tracker.operation("dht.store", budget_beats=50) as op:
            for phase in (Phase.CONNECTING, Phase.NEGOTIATING, Phase.EXECUTING):
                await op.phase(phase)
        with pytest.raises(RuntimeError):
            async with tracker.operation("dht.retrieve"):
                raise RuntimeError("replica unreachable")
        async with tracker.operation("publish", budget_beats=1):
            await asyncio.sleep(0.6)  # about six beats

        async def ops() -> list[dict[str, Any]]:
            return (await _get(survivor, "/v1/operations"))["operations"]

        await wait_until(lambda: _count(ops, 3), timeout=10, message="three operations")
        by_kind = {o["kind"]: o for o in await ops()}
        assert [p["phase"] for p in by_kind["dht.store"]["phases"]] == [
            p.value for p in Phase if p is not Phase.FAILED
        ]
        assert by_kind["dht.retrieve"]["phase"] == "failed"
        assert "replica unreachable" in by_kind["dht.retrieve"]["error"]
        assert by_kind["publish"]["overrun"] is True and by_kind["dht.store"]["overrun"] is False
        failed_only = (await _get(survivor, "/v1/operations?phase=failed"))["operations"]
        assert [o["kind"] for o in failed_only] == ["dht.retrieve"]

        # an agent whose clock drifts, and one that goes silent
        drifter = Tracker(bus_client, "agent-drift")
        await drifter.start()
        drifter.offset = -30
        await drifter.heartbeat("executing")
        await tracker.heartbeat("executing")
        await wait_until(
            lambda: _health(survivor, "agent-drift", "drifting"), timeout=10, message="drifting"
        )
        await wait_until(
            lambda: _health(survivor, "agent-ops", "silent"), timeout=15, message="silent"
        )
        metrics = httpx.get(f"{survivor.url}/metrics").text
        assert "chorus_backbeat_overruns_total{" in metrics
        bars = (await _get(survivor, "/v1/bars"))["bars"]
        assert bars and bars[0]["type"] == "backbeat.barreport.v1"
        await tracker.stop()
        await drifter.stop()
    finally:
        await nc.close()
        for p in procs.values():
            p.kill()


async def _get(proc: ServiceProcess, path: str) -> Any:
    async with httpx.AsyncClient(timeout=5, headers=ADMIN) as client:
        return (await client.get(f"{proc.url}{path}")).json()


async def _count(fetch: Any, n: int) -> bool:
    return len(await fetch()) >= n


async def _health(proc: ServiceProcess, agent: str, state: str) -> bool:
    async with httpx.AsyncClient(timeout=5, headers=ADMIN) as client:
        resp = await client.get(f"{proc.url}/v1/agents/{agent}/health")
    return resp.status_code == 200 and resp.json()["health"] == state


async def test_operations_of_several_services_show_their_phases(
    make_settings: Any, tmp_path: Path, bus_client: Bus
) -> None:
    """The gateway's publish and the DHT's store report through the tracker every service has."""
    from chorus_backbeat import BackbeatService
    from chorus_backbeat.service import BackbeatSettings
    from chorus_common.envelopes import Envelope, MessageType
    from chorus_common.feeds import FeedWriter
    from chorus_common.sealed import RoleKeyPair
    from chorus_common.signing import AgentKey
    from chorus_common.testing import serve_in_process
    from chorus_dht import DhtService
    from chorus_dht.service import DhtSettings
    from chorus_gateway import GatewayService
    from chorus_gateway.settings import GatewaySettings

    admin = {"Authorization": "Bearer test-admin-token"}
    backbeat = BackbeatService(
        make_settings(BackbeatSettings, node_id="bb", backbeat_tempo_bpm=TEMPO)
    )
    gateway = GatewayService(make_settings(GatewaySettings, node_id="gw"))
    dht = DhtService(
        make_settings(DhtSettings, node_id="dht-x", data_dir=tmp_path / "dht", dht_replication=1)
    )
    async with (
        serve_in_process(backbeat) as bb_url,
        serve_in_process(gateway) as gw_url,
        serve_in_process(dht) as dht_url,
        httpx.AsyncClient(headers=admin, timeout=10) as client,
    ):
        key = AgentKey.generate()
        await client.post(f"{gw_url}/v1/agents/a1/keys", json={"public_key": key.public_key})
        env = FeedWriter("a1", key).seal(
            Envelope(
                type=MessageType.STATUS_UPDATE, sender="a1", payload={"agent": "a1", "status": "ok"}
            )
        )
        assert (
            await client.post(f"{gw_url}/v1/envelopes", json=env.model_dump(mode="json"))
        ).status_code == 201
        await client.post(
            f"{dht_url}/v1/roles/dev/keys", json={"public_key": RoleKeyPair.generate().public_text}
        )
        put = await client.put(
            f"{dht_url}/v1/ucxl/ucxl%3A%2F%2Fa%3Ab%40c%3Ad%2F*%5E%2Fx.json",
            json={"value": 1, "roles": ["dev"]},
        )
        assert put.status_code == 200, put.text

        async def both() -> list[dict[str, Any]] | None:
            ops = (await client.get(f"{bb_url}/v1/operations")).json()["operations"]
            done = [
                o
                for o in ops
                if o["kind"] in ("pubsub.publish", "dht.store") and o["phase"] == "completed"
            ]
            return done if len(done) >= 2 else None

        done = await wait_until(both, timeout=10, message="operations from two services")
        expected = ["started", "connecting", "negotiating", "executing", "completed"]
        for op in done:
            assert [p["phase"] for p in op["phases"]] == expected, op
        assert {op["agent"] for op in done} == {"gw", "dht-x"}
