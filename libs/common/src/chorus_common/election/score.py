"""Measuring the five score components for real (SPEC.md §2, §10).

Raw readings are noisy (CPU load differs from one heartbeat to the next, so
does a round trip), so what a participant announces is their moving average,
quantised (:class:`~chorus_common.election.rules.ScoreSmoother`): two
replicas on one machine then announce the same resources, and a challenge
needs a real difference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil

from chorus_common.election.rules import (
    DEFAULT_SCORE_QUANTUM,
    DEFAULT_WEIGHTS,
    Score,
    ScoreSmoother,
    normalise,
)

__all__ = ["ScoreSource"]

DAY = 24 * 3600.0
WEEK = 7 * DAY


@dataclass
class ScoreSource:
    """Uptime since start (over 24 h), capabilities from config, CPU/memory headroom,
    NATS round trip (1 ms is perfect, 250 ms is nothing), experience from completed
    terms and tasks (over 168 h of admin time); smoothed over ``smoothing`` seconds."""

    capabilities: list[str] = field(default_factory=list)
    wanted_capabilities: int = 5
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    started: float = field(default_factory=time.monotonic)
    admin_seconds: float = 0.0
    completed_tasks: int = 0
    last_rtt: float | None = None
    #: the moving average's time constant in seconds (0: announce raw readings)
    smoothing: float = 6.0
    quantum: float = DEFAULT_SCORE_QUANTUM
    #: operators may pin a component (e.g. to prefer one node); pinned values are not smoothed
    overrides: dict[str, float] = field(default_factory=dict)
    smoother: ScoreSmoother = field(init=False)

    def __post_init__(self) -> None:
        self.smoother = ScoreSmoother(tau=self.smoothing, quantum=self.quantum)
        # the first cpu_percent() call has nothing to compare with and answers 0 % busy;
        # take it now, so the first announced score is a real reading
        psutil.cpu_percent(interval=None)

    def raw(self, now: float | None = None) -> dict[str, float]:
        """One reading of the five components, unsmoothed."""
        now = time.monotonic() if now is None else now
        uptime = normalise(now - self.started, DAY)
        caps = normalise(len(self.capabilities), self.wanted_capabilities)
        cpu_free = 1.0 - psutil.cpu_percent(interval=None) / 100.0
        memory = psutil.virtual_memory()
        mem_free = memory.available / memory.total
        resources = max(0.0, min(1.0, (cpu_free + mem_free) / 2))
        rtt = self.last_rtt if self.last_rtt is not None else 0.25
        network = max(0.0, min(1.0, 1.0 - (rtt - 0.001) / 0.249))
        experience = normalise(self.admin_seconds + self.completed_tasks * 3600.0, WEEK)
        return {
            "uptime": uptime,
            "capabilities": caps,
            "resources": resources,
            "network": network,
            "experience": experience,
        }

    def measure(self, now: float | None = None) -> Score:
        """Take a reading and fold it into the moving average: the score to announce."""
        now = time.monotonic() if now is None else now
        components = self.smoother.update(self.raw(now), now)
        components.update(self.overrides)
        return Score(components, self.weights)
