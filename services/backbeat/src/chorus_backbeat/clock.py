"""Beat arithmetic: which beat it is, from a cluster epoch and a tempo (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BeatClock"]


@dataclass(frozen=True)
class BeatClock:
    """Beat ``n`` starts at ``epoch + n * 60 / tempo``; every pulse leader computes the same index."""

    epoch: float
    tempo_bpm: float
    base_index: int = 0

    @property
    def period(self) -> float:
        return 60.0 / self.tempo_bpm

    def index_at(self, now: float) -> int:
        return self.base_index + max(0, int((now - self.epoch) // self.period))

    def start_of(self, index: int) -> float:
        return self.epoch + (index - self.base_index) * self.period

    def retempo(self, now: float, tempo_bpm: float) -> BeatClock:
        """Change tempo without moving the index backwards: the next beat keeps counting up."""
        current = self.index_at(now)
        return BeatClock(epoch=now, tempo_bpm=tempo_bpm, base_index=current + 1)
