"""What every replica follows: the beat frames the pulse signs, and everyone's status claims.

From them it keeps the operations and their budgets, each agent's drift and silence,
and the bar reports (which the pulse replica also publishes on ``chorus.backbeat.bar``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from chorus_backbeat.budgets import AgentWatch, BarTally, OperationBook
from chorus_backbeat.metrics import BackbeatMetrics
from chorus_backbeat.settings import BackbeatSettings
from chorus_backbeat.topics import BAR_SUBJECT, BEATS, CLAIM_SUBJECTS, STATUS_CLAIMS
from chorus_common.backbeat import BarReport, BeatFrame, HybridLogicalClock, StatusClaim
from chorus_common.bus import Bus, Received
from chorus_common.leadership import LeaderLease
from chorus_common.service_signing import ForgedKind, ServiceSigner, ServiceVerifier

__all__ = ["BAR_SUBJECT", "CLAIM_SUBJECTS", "BeatView"]

#: publishes bytes already signed over: ``(subject, data, headers)``
#: (:meth:`chorus_common.bus.Topic.publish_raw` of :data:`chorus_backbeat.topics.BARS`)
Publish = Callable[..., Coroutine[Any, Any, None]]


class BeatView:
    """The beat as this replica saw it, and every agent's operations on it.

    ``verifier`` refuses frames no registered backbeat replica signed; ``heartbeat``
    reports this replica on the beat (it is an agent too); bar reports go out through
    ``publish`` (core NATS, kept by the ``CHORUS_BACKBEAT`` stream), signed by ``signer``, while ``lease`` says this replica leads.
    """

    def __init__(
        self,
        settings: BackbeatSettings,
        metrics: BackbeatMetrics,
        *,
        service: str,
        verifier: ServiceVerifier,
        signer: ServiceSigner,
        lease: LeaderLease,
        publish: Publish,
        heartbeat: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.service = service
        self.verifier = verifier
        self.signer = signer
        self.lease = lease
        self.publish = publish
        self.heartbeat = heartbeat
        self.ops = OperationBook()
        self.watch = AgentWatch(
            settings.backbeat_drift_tolerance_beats, settings.backbeat_silence_beats
        )
        self.hlc = HybridLogicalClock(settings.node_id)
        self.last_index = -1
        self.tempo = settings.backbeat_tempo_bpm
        self.bars: list[dict[str, Any]] = []
        self.bar: BarTally | None = None
        self._subs: list[Any] = []

    async def start(self, bus: Bus) -> None:
        """Follow the beat frames and the status claims."""
        self._subs.append(await bus.topic(BEATS).subscribe(self.on_frame))
        self._subs.append(await bus.topic(STATUS_CLAIMS).subscribe(self.on_claim))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def on_frame(self, msg: Received[BeatFrame]) -> None:
        signer = await self.verifier.check_detached(
            ForgedKind.BEAT, self.service, msg.subject, msg.data, msg.headers
        )
        if signer is None:
            return  # forged (counted), or a copy already taken
        frame = msg.value
        if frame.beat_index <= self.last_index:
            return
        self.last_index, self.tempo = frame.beat_index, frame.tempo_bpm
        self.hlc.observe(frame.hlc)
        self.metrics.index.set(frame.beat_index)
        self.metrics.tempo.set(frame.tempo_bpm)
        if self.bar is None or frame.downbeat:
            if self.bar is not None:
                report = self.bar.close(frame.beat_index - 1, 0.0)
                self._record_bar(report)
            self.bar = BarTally(frame.window_id, frame.beat_index)
        await self.heartbeat()  # this service is an agent on the beat too
        self._refresh_agents()

    def _record_bar(self, report: BarReport) -> None:
        self.bars.append(report.model_dump(mode="json"))
        del self.bars[:-50]
        self.metrics.bars.inc()
        if self.lease.is_leader:
            body = report.model_dump_json().encode()
            asyncio.get_running_loop().create_task(
                self.publish(BAR_SUBJECT, body, headers=self.signer.sign_headers(BAR_SUBJECT, body))
            )

    async def on_claim(self, msg: Received[StatusClaim]) -> None:
        claim = msg.value
        pulse = max(self.last_index, 0)
        self.watch.apply(claim, pulse)
        if self.bar is not None:
            self.bar.apply(claim, self.settings.backbeat_drift_tolerance_beats, pulse)
        if claim.phase is not None and claim.kind is not None:
            self.metrics.operations.labels(claim.kind, claim.phase.value).inc()
        ended = self.ops.apply(claim, pulse)
        if ended is not None and ended.overrun:
            self.metrics.overruns.labels(ended.kind).inc()

    def _refresh_agents(self) -> None:
        period = 60.0 / self.tempo
        silent, drift = 0, 0.0
        for agent in self.watch.agents:
            state, pulse = self.watch.health(agent, self.last_index)
            silent += state == "silent"
            drift = max(drift, abs(pulse.drift_beats) * period)
        self.metrics.silent.set(silent)
        self.metrics.drift.set(drift)
