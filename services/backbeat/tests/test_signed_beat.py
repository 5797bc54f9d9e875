"""Beat frames are signed by the pulse replica: a frame from a plain NATS client moves neither
the backbeat service nor an agent's tracker, and is counted; the real beat keeps coming."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import nats

from chorus_backbeat import BackbeatService
from chorus_backbeat.service import BackbeatSettings
from chorus_common.backbeat import BeatFrame, Tracker, window_id
from chorus_common.bus import Bus
from chorus_common.service_signing import HEADER_SENDER, HEADER_SEQ, HEADER_SIG, service_sender
from chorus_common.signing import AgentKey
from chorus_common.subjects import BACKBEAT_BEAT
from chorus_common.testing import serve_in_process, wait_until

FAR = 10**9  # a beat index no real pulse reaches in a test


def _frame(index: int) -> bytes:
    frame = BeatFrame(
        cluster_id="local",
        beat_index=index,
        downbeat=False,
        phase="plan",
        hlc="ffffffffff:0:mallory",
        deadline_at=datetime.now(UTC),
        tempo_bpm=1.0,
        window_id=window_id("local", 1),
        term=99,
    )
    return bytes(frame.model_dump_json(), "utf-8")


def _forged_beats(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("chorus_bus_forged_total{") and 'kind="beat"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_forged_beat_frames_are_refused_and_counted(
    make_settings: Callable[..., Any], bus_client: Bus, nats_url: str
) -> None:
    settings = make_settings(
        BackbeatSettings, node_id="bb1", backbeat_tempo_bpm=600.0, backbeat_lease_ttl_seconds=0.6
    )
    service = BackbeatService(settings)
    tracker = Tracker(bus_client, "agent-follows")
    plain = await nats.connect(nats_url)
    try:
        async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
            await tracker.start()
            await wait_until(lambda: tracker.beat_index > 2, timeout=15, message="real beats")
            sender = service_sender("backbeat", "bb1")
            mallory = AgentKey.generate()
            body = _frame(FAR)
            forged = [
                {},  # unsigned
                {HEADER_SENDER: sender, HEADER_SEQ: "1", HEADER_SIG: mallory.sign(body)},
                {HEADER_SENDER: "svc-backbeat-nobody", HEADER_SEQ: "1", HEADER_SIG: "x"},
                {HEADER_SENDER: "svc-election-e1", HEADER_SEQ: "1", HEADER_SIG: "x"},
            ]
            for headers in forged:
                await plain.publish(BACKBEAT_BEAT, body, headers=headers or None)
            await plain.flush()
            # the real beat keeps coming, and nobody jumped to the forged index or tempo
            seen = tracker.beat_index
            await wait_until(
                lambda: tracker.beat_index > seen + 3, timeout=10, message="beats go on"
            )
            assert tracker.beat_index < FAR and tracker.tempo_bpm == 600.0
            assert 0 < service.view.last_index < FAR
            assert tracker.verifier is not None
            await wait_until(
                lambda: sum(tracker.verifier.forged.values()) == len(forged),
                timeout=10,
                message="the tracker refused every forged frame",
            )
            assert tracker.verifier.forged == {
                ("beat", "unsigned"): 1,
                ("beat", "bad_signature"): 1,
                ("beat", "unknown_sender"): 1,
                ("beat", "not_service"): 1,
            }
            tempo = (await client.get("/v1/tempo")).json()
            assert tempo["beat_index"] < FAR

            async def service_counted() -> bool:
                return _forged_beats((await client.get("/metrics")).text) == len(forged)

            await wait_until(service_counted, timeout=10, message="the service counted them")
    finally:
        await tracker.stop()
        await plain.close()
