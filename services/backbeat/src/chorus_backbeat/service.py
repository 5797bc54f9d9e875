"""BACKBEAT: the pulse (leader only, fenced), and the view of everyone's operations on the beat.

Each replica signs its beat frames and bar reports with its own key (a detached
signature in headers, chorus_common.service_signing), and follows only frames a
registered backbeat replica signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import Depends, FastAPI, Query
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

from chorus_backbeat.budgets import AgentWatch, BarTally, OperationBook
from chorus_backbeat.clock import BeatClock
from chorus_common.aio import cancel_and_wait
from chorus_common.backbeat import (
    BAR_LENGTH,
    BarReport,
    BeatFrame,
    HybridLogicalClock,
    Phase,
    StatusClaim,
    beat_phase,
    utc,
    window_id,
)
from chorus_common.config import ChorusSettings
from chorus_common.errors import NotFoundError, RequestInvalidError
from chorus_common.leadership import LeaderLease
from chorus_common.service import Service, problem_responses
from chorus_common.service_signing import ForgedKind, ServiceSigner, ServiceVerifier
from chorus_common.subjects import BACKBEAT_BEAT
from chorus_common.topology import BUCKET_ELECTION, BUCKET_REGISTRY

CLOCK_KEY = "backbeat.clock"
BAR_SUBJECT = "chorus.backbeat.bar"


class BackbeatSettings(ChorusSettings):
    backbeat_tempo_bpm: float = Field(default=2.0, gt=0, le=6000)
    backbeat_bar_length: int = Field(default=BAR_LENGTH, ge=1)
    backbeat_drift_tolerance_beats: int = Field(default=2, ge=0)
    backbeat_silence_beats: int = Field(default=4, ge=1)
    backbeat_lease_ttl_seconds: float = Field(default=1.0, gt=0)


class TempoChange(BaseModel):
    tempo_bpm: float = Field(gt=0, le=6000)


class BackbeatService(Service):
    name = "backbeat"
    description = "Beat clock, operation telemetry, budgets and drift"
    settings_class = BackbeatSettings
    settings: BackbeatSettings

    def __init__(self, settings: BackbeatSettings | None = None) -> None:
        super().__init__(settings)
        r = self.metrics.registry
        self.m_index = Gauge("chorus_backbeat_beat_index", "Last beat index seen", registry=r)
        self.m_tempo = Gauge("chorus_backbeat_tempo_bpm", "Tempo in beats per minute", registry=r)
        self.m_pulse = Gauge(
            "chorus_backbeat_is_pulse", "1 while this replica publishes the beat", registry=r
        )
        self.m_ops = Counter(
            "chorus_backbeat_operations_total",
            "Operation phases reported",
            ["kind", "phase"],
            registry=r,
        )
        self.m_overruns = Counter(
            "chorus_backbeat_overruns_total",
            "Operations over their beat budget",
            ["kind"],
            registry=r,
        )
        self.m_drift = Gauge(
            "chorus_backbeat_drift_seconds", "Largest agent drift from the pulse", registry=r
        )
        self.m_silent = Gauge(
            "chorus_backbeat_silent_agents", "Agents that stopped reporting", registry=r
        )
        self.m_bars = Counter("chorus_backbeat_bars_total", "Bar reports published", registry=r)
        self.ops = OperationBook()
        self.watch = AgentWatch(
            self.settings.backbeat_drift_tolerance_beats, self.settings.backbeat_silence_beats
        )
        self.hlc = HybridLogicalClock(self.settings.node_id)
        self.last_index = -1
        self.tempo = self.settings.backbeat_tempo_bpm
        self.bars: list[dict[str, Any]] = []
        self.bar: BarTally | None = None
        self.frames_published = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []

    async def setup(self) -> None:
        self.kv = await self.bus.js.key_value(BUCKET_ELECTION)
        self.signer = await ServiceSigner.open(
            await self.bus.js.key_value(BUCKET_REGISTRY),
            self.name,
            self.settings.node_id,
            self.settings.data_dir,
        )
        # the service's tracker (Service.tracker) follows the same frames and counts each
        # forged one in chorus_bus_forged_total; this verifier refuses them uncounted, so a
        # forgery is counted once per process
        self.verifier = ServiceVerifier(await self.bus.js.key_value(BUCKET_REGISTRY))
        await self._clock()  # create the cluster's clock if nobody has yet
        self.lease = await LeaderLease.open(
            self.bus.js,
            "backbeat",
            self.settings.node_id,
            ttl=self.settings.backbeat_lease_ttl_seconds,
            may_hold=lambda: self.licensed,  # no seat: give the lease up, stop leading
        )
        self.on_license_change.append(self.lease.poke)
        self.lease.start()
        self._subs.append(await self.bus.nc.subscribe(BACKBEAT_BEAT, cb=self._on_frame))
        self._subs.append(
            await self.bus.nc.subscribe("chorus.backbeat.status.*", cb=self._on_claim)
        )
        self._tasks.append(asyncio.create_task(self._pulse(), name="pulse"))

    async def teardown(self) -> None:
        await cancel_and_wait(self._tasks)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.lease.stop(release=True)

    # -- the cluster clock ----------------------------------------------------------

    async def _clock(self) -> tuple[BeatClock, int | None]:
        try:
            entry = await self.kv.get(CLOCK_KEY)
            doc = json.loads(entry.value or b"{}")
            return BeatClock(doc["epoch"], doc["tempo_bpm"], doc["base_index"]), entry.revision
        except KeyNotFoundError:
            clock = BeatClock(time.time(), self.settings.backbeat_tempo_bpm, 0)
            with contextlib.suppress(Exception):
                await self.kv.create(CLOCK_KEY, json.dumps(clock.__dict__).encode())
            return clock, None

    async def set_tempo(self, tempo: float) -> BeatClock:
        for _ in range(10):
            clock, revision = await self._clock()
            new = clock.retempo(time.time(), tempo)
            new = BeatClock(new.epoch, new.tempo_bpm, max(new.base_index, self.last_index + 1))
            try:
                if revision is None:
                    await self.kv.create(CLOCK_KEY, json.dumps(new.__dict__).encode())
                else:
                    await self.kv.update(
                        CLOCK_KEY, json.dumps(new.__dict__).encode(), last=revision
                    )
                return new
            except KeyWrongLastSequenceError:
                continue
        raise RequestInvalidError("the tempo is being changed concurrently; try again")

    # -- the pulse (leader only) -------------------------------------------------------

    async def _pulse(self) -> None:
        while True:
            sleep = 0.05
            try:
                self.m_pulse.set(1 if self.lease.is_leader else 0)
                if self.lease.is_leader and self.lease.term is not None:
                    clock, _ = await self._clock()
                    index = clock.index_at(time.time())
                    if index > self.last_index:
                        await self._publish_frame(clock, index, self.lease.term)
                    sleep = max(
                        0.005, min(clock.start_of(index + 1) - time.time(), clock.period, 0.5)
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus may be away; the lease decides who pulses next
                sleep = 0.1
            await asyncio.sleep(sleep)

    async def _publish_frame(self, clock: BeatClock, index: int, term: int) -> None:
        bar = self.settings.backbeat_bar_length
        frame = BeatFrame(
            cluster_id=self.settings.cluster,
            beat_index=index,
            downbeat=index % bar == 0,
            phase=beat_phase(index),
            hlc=self.hlc.now(),
            deadline_at=utc(clock.start_of(index + 1)),
            tempo_bpm=clock.tempo_bpm,
            window_id=window_id(self.settings.cluster, index // bar),
            term=term,
        )
        self.lease.require_term(term)  # a demoted pulse must not speak
        body = frame.model_dump_json().encode()
        # the beat id de-duplicates a frame two leaders might both try to publish
        await self.bus.js.publish(
            BACKBEAT_BEAT,
            body,
            headers={
                "Nats-Msg-Id": f"beat-{self.settings.cluster}-{index}",
                **self.signer.sign_headers(BACKBEAT_BEAT, body),
            },
            timeout=1,
        )
        self.frames_published += 1

    # -- what everyone reports -----------------------------------------------------------

    async def _on_frame(self, msg: Msg) -> None:
        signer = await self.verifier.check_detached(
            ForgedKind.BEAT, self.name, msg.subject, msg.data, msg.headers
        )
        if signer is None:
            return  # forged (counted), or a copy already taken
        try:
            frame = BeatFrame.model_validate_json(msg.data)
        except ValueError:
            return
        if frame.beat_index <= self.last_index:
            return
        self.last_index, self.tempo = frame.beat_index, frame.tempo_bpm
        self.hlc.observe(frame.hlc)
        self.m_index.set(frame.beat_index)
        self.m_tempo.set(frame.tempo_bpm)
        if self.bar is None or frame.downbeat:
            if self.bar is not None:
                report = self.bar.close(frame.beat_index - 1, 0.0)
                self._record_bar(report)
            self.bar = BarTally(frame.window_id, frame.beat_index)
        await self.tracker.heartbeat()  # this service is an agent on the beat too
        self._refresh_agents()

    def _record_bar(self, report: BarReport) -> None:
        self.bars.append(report.model_dump(mode="json"))
        del self.bars[:-50]
        self.m_bars.inc()
        if self.lease.is_leader:
            body = report.model_dump_json().encode()
            asyncio.get_running_loop().create_task(
                self.bus.publish_core(
                    BAR_SUBJECT, body, headers=self.signer.sign_headers(BAR_SUBJECT, body)
                )
            )

    async def _on_claim(self, msg: Msg) -> None:
        try:
            claim = StatusClaim.model_validate_json(msg.data)
        except ValueError:
            return
        pulse = max(self.last_index, 0)
        self.watch.apply(claim, pulse)
        if self.bar is not None:
            self.bar.apply(claim, self.settings.backbeat_drift_tolerance_beats, pulse)
        if claim.phase is not None and claim.kind is not None:
            self.m_ops.labels(claim.kind, claim.phase.value).inc()
        ended = self.ops.apply(claim, pulse)
        if ended is not None and ended.overrun:
            self.m_overruns.labels(ended.kind).inc()

    def _refresh_agents(self) -> None:
        period = 60.0 / self.tempo
        silent, drift = 0, 0.0
        for agent in self.watch.agents:
            state, pulse = self.watch.health(agent, self.last_index)
            silent += state == "silent"
            drift = max(drift, abs(pulse.drift_beats) * period)
        self.m_silent.set(silent)
        self.m_drift.set(drift)

    # -- REST ----------------------------------------------------------------------------------

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        @app.get("/v1/tempo", tags=["backbeat"], responses=problem_responses(503))
        async def tempo() -> dict[str, Any]:
            clock, _ = await self._clock()
            return {
                "tempo_bpm": clock.tempo_bpm,
                "beat_index": self.last_index,
                "period_seconds": clock.period,
                "bar_length": self.settings.backbeat_bar_length,
                "pulse": self.lease.is_leader,
            }

        @app.put(
            "/v1/tempo",
            dependencies=[Depends(admin)],
            tags=["backbeat"],
            responses=problem_responses(503),
        )
        async def put_tempo(body: TempoChange) -> dict[str, Any]:
            """Change the tempo; the beat index keeps counting up across the change."""
            clock = await self.set_tempo(body.tempo_bpm)
            return {"tempo_bpm": clock.tempo_bpm, "next_index": clock.base_index}

        @app.get("/v1/operations", tags=["backbeat"])
        async def operations(
            kind: str | None = None,
            phase: str | None = None,
            limit: int = Query(100, ge=1, le=1000),
        ) -> dict[str, Any]:
            if phase is not None and phase not in {p.value for p in Phase}:
                raise RequestInvalidError(f"phase must be one of {[p.value for p in Phase]}")
            items = [
                o.as_dict()
                for o in reversed(self.ops.operations.values())
                if (kind is None or o.kind == kind) and (phase is None or o.phase == phase)
            ]
            return {"operations": items[:limit]}

        @app.get("/v1/budgets", tags=["backbeat"])
        async def budgets() -> dict[str, Any]:
            return {
                "budgets": {
                    kind: {"beats": self.ops.budget(kind), "samples": len(history)}
                    for kind, history in self.ops.durations.items()
                }
            }

        @app.get("/v1/agents/{agent}/health", tags=["backbeat"], responses=problem_responses(404))
        async def agent_health(agent: str) -> dict[str, Any]:
            if agent not in self.watch.agents:
                raise NotFoundError(f"agent {agent!r} has not reported on the beat")
            state, pulse = self.watch.health(agent, self.last_index)
            return {
                "agent": agent,
                "health": state,
                "last_beat_index": pulse.last_index,
                "pulse_index": self.last_index,
                "drift_beats": pulse.drift_beats,
                "beats_since_last_claim": self.last_index - pulse.seen_at_index,
            }

        @app.get("/v1/bars", tags=["backbeat"])
        async def bars() -> dict[str, Any]:
            return {"bars": list(reversed(self.bars))}
