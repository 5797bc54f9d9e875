"""A circuit breaker around the license upstream: closed → open → half-open, with ``now`` passed in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    reset_timeout: float = 30.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    _probe_out: bool = False

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open, exactly one probe at a time."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.reset_timeout:
            self.state = BreakerState.HALF_OPEN
            self._probe_out = False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def success(self) -> None:
        self.state, self.failures, self._probe_out = BreakerState.CLOSED, 0, False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self.opened_at, self._probe_out = BreakerState.OPEN, now, False
