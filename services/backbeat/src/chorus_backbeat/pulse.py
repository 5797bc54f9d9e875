"""The pulse: the cluster's beat clock (in the election bucket), and the leader that beats it.

Only the holder of the ``backbeat`` leader lease publishes frames, each fenced by the
lease's term and signed with this replica's key; every replica computes the same index
from the clock, so a new leader continues where the old one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from pydantic import BaseModel

from chorus_backbeat.clock import BeatClock
from chorus_backbeat.metrics import BackbeatMetrics
from chorus_backbeat.settings import BackbeatSettings
from chorus_backbeat.topics import BEATS
from chorus_backbeat.view import BeatView
from chorus_common.aio import cancel_and_wait
from chorus_common.backbeat import BeatFrame, beat_phase, utc, window_id
from chorus_common.bus import Bucket, Bus
from chorus_common.errors import ConflictError, RequestInvalidError
from chorus_common.leadership import LeaderLease
from chorus_common.service_signing import ServiceSigner
from chorus_common.topology import BUCKET_ELECTION

__all__ = ["CLOCK_KEY", "ClockDocument", "ClusterClock", "Pulse"]

#: the key of the cluster's clock in the election bucket (chorus_common.nats_auth lets
#: backbeat write it)
CLOCK_KEY = "backbeat.clock"


class ClockDocument(BaseModel):
    """The clock as stored under :data:`CLOCK_KEY`: ``{"epoch", "tempo_bpm", "base_index"}``
    (a :class:`BeatClock`'s fields, as every replica has written them)."""

    epoch: float
    tempo_bpm: float
    base_index: int = 0

    @classmethod
    def of(cls, clock: BeatClock) -> ClockDocument:
        return cls(epoch=clock.epoch, tempo_bpm=clock.tempo_bpm, base_index=clock.base_index)

    def clock(self) -> BeatClock:
        return BeatClock(self.epoch, self.tempo_bpm, self.base_index)


class ClusterClock:
    """The one :class:`BeatClock` of the cluster, kept under :data:`CLOCK_KEY`."""

    def __init__(self, bucket: Bucket[ClockDocument], tempo_bpm: float) -> None:
        self.bucket = bucket
        #: the tempo a cluster starts at, if nobody has created the clock yet
        self.tempo_bpm = tempo_bpm

    @classmethod
    def open(cls, bus: Bus, tempo_bpm: float) -> ClusterClock:
        """The clock in the election bucket of ``bus``."""
        return cls(bus.bucket(BUCKET_ELECTION, ClockDocument), tempo_bpm)

    async def read(self) -> tuple[BeatClock, int | None]:
        """The clock and its revision; created (revision None) if nobody has yet."""
        found = await self.bucket.get(CLOCK_KEY)
        if found is not None:
            return found.value.clock(), found.revision
        clock = BeatClock(time.time(), self.tempo_bpm, 0)
        with contextlib.suppress(Exception):
            await self.bucket.create(CLOCK_KEY, ClockDocument.of(clock))
        return clock, None

    async def set_tempo(self, tempo: float, next_index: Callable[[], int]) -> BeatClock:
        """Change the tempo; the beat index goes on from ``next_index()`` at the least."""
        for _ in range(10):
            clock, revision = await self.read()
            new = clock.retempo(time.time(), tempo)
            new = BeatClock(new.epoch, new.tempo_bpm, max(new.base_index, next_index()))
            try:
                if revision is None:
                    await self.bucket.create(CLOCK_KEY, ClockDocument.of(new))
                else:
                    await self.bucket.update(CLOCK_KEY, ClockDocument.of(new), revision)
                return new
            except ConflictError:
                continue
        raise RequestInvalidError("the tempo is being changed concurrently; try again")


class Pulse:
    """While this replica holds ``lease``, publish each beat's frame on the clock's time."""

    def __init__(
        self,
        settings: BackbeatSettings,
        metrics: BackbeatMetrics,
        *,
        clock: ClusterClock,
        lease: LeaderLease,
        view: BeatView,
        bus: Bus,
        signer: ServiceSigner,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.lease = lease
        self.view = view
        self.bus = bus
        self.signer = signer
        self.frames_published = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self.lease.is_leader

    async def set_tempo(self, tempo: float) -> BeatClock:
        """Change the tempo; the beat index keeps counting up across the change."""
        return await self.clock.set_tempo(tempo, lambda: self.view.last_index + 1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat(), name="pulse")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _beat(self) -> None:
        while True:
            sleep = 0.05
            try:
                self.metrics.pulse.set(1 if self.lease.is_leader else 0)
                if self.lease.is_leader and self.lease.term is not None:
                    clock, _ = await self.clock.read()
                    index = clock.index_at(time.time())
                    if index > self.view.last_index:
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
        cluster = self.settings.cluster
        bar = self.settings.backbeat_bar_length
        frame = BeatFrame(
            cluster_id=cluster,
            beat_index=index,
            downbeat=index % bar == 0,
            phase=beat_phase(index),
            hlc=self.view.hlc.now(),
            deadline_at=utc(clock.start_of(index + 1)),
            tempo_bpm=clock.tempo_bpm,
            window_id=window_id(cluster, index // bar),
            term=term,
        )
        self.lease.require_term(term)  # a demoted pulse must not speak
        body = frame.model_dump_json().encode()
        subject = BEATS.subject()
        # the beat id de-duplicates a frame two leaders might both try to publish
        headers = {
            "Nats-Msg-Id": f"beat-{cluster}-{index}",
            **self.signer.sign_headers(subject, body),
        }
        # stored and acknowledged; Nats-Msg-Id keeps two leaders from storing one beat twice
        await self.bus.record(subject, body, headers=headers, timeout=1)
        self.frames_published += 1
