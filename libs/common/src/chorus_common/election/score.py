"""Measuring the five score components for real (SPEC.md §2, §10)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil

from chorus_common.election.rules import DEFAULT_WEIGHTS, Score, normalise

DAY = 24 * 3600.0
WEEK = 7 * DAY


@dataclass
class ScoreSource:
    """Uptime since start (over 24 h), capabilities from config, CPU/memory headroom,
    NATS round trip (1 ms is perfect, 250 ms is nothing), experience from completed
    terms and tasks (over 168 h of admin time)."""

    capabilities: list[str] = field(default_factory=list)
    wanted_capabilities: int = 5
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    started: float = field(default_factory=time.monotonic)
    admin_seconds: float = 0.0
    completed_tasks: int = 0
    last_rtt: float | None = None
    #: tests and operators may pin a component (e.g. to make one node win)
    overrides: dict[str, float] = field(default_factory=dict)

    def measure(self) -> Score:
        uptime = normalise(time.monotonic() - self.started, DAY)
        caps = normalise(len(self.capabilities), self.wanted_capabilities)
        cpu_free = 1.0 - psutil.cpu_percent(interval=None) / 100.0
        mem_free = psutil.virtual_memory().available / psutil.virtual_memory().total
        resources = max(0.0, min(1.0, (cpu_free + mem_free) / 2))
        rtt = self.last_rtt if self.last_rtt is not None else 0.25
        network = max(0.0, min(1.0, 1.0 - (rtt - 0.001) / 0.249))
        experience = normalise(self.admin_seconds + self.completed_tasks * 3600.0, WEEK)
        components = {
            "uptime": uptime,
            "capabilities": caps,
            "resources": resources,
            "network": network,
            "experience": experience,
        }
        components.update(self.overrides)
        return Score(components, self.weights)
