"""SPEC's audit log of stores and reads: who touched which address, when, and how.

Each node keeps the newest ``size`` events in memory (a ring: bounded whatever the
traffic) for ``GET /v1/audit?address=`` and writes each one as an INFO line to the
``chorus.dht.audit`` logger, so the durable copy is the log pipeline's (redacted by
SHHH like every other line). Pure apart from that logger.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Action", "AuditEvent", "AuditLog"]

Action = Literal["store", "read", "delete", "list"]
log = logging.getLogger("chorus.dht.audit")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: float
    action: Action
    #: ``kind:name`` of the caller (``agent:gpt4``, ``operator:admin``) or ``node:<peer>``
    who: str
    address: str
    #: what came of it: ok, not_found, quorum, …
    result: str = "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    def __init__(self, size: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.events: deque[AuditEvent] = deque(maxlen=max(size, 1))
        self.clock = clock

    def record(self, action: Action, who: str, address: str, result: str = "ok") -> AuditEvent:
        event = AuditEvent(self.clock(), action, who, address, result)
        self.events.append(event)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "dht audit: %s %s by %s (%s)",
                action,
                address,
                who,
                result,
                extra={"audit": event.as_dict()},
            )
        return event

    def query(self, address: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """The newest ``limit`` events, newest first, for ``address`` (every address
        when None)."""
        out: list[AuditEvent] = []
        for event in reversed(self.events):
            if address is None or event.address == address:
                out.append(event)
                if len(out) >= limit:
                    break
        return out
