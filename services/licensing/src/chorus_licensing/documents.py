"""The licensing service's documents: seat leases in ``chorus-leases`` and the seat
endpoints' requests and answers, as pydantic models.

- :class:`SeatLease` — a held seat; :class:`SeatRecord` — what ``seat.<n>`` holds (a
  lease, or ``{"lease_id": null}`` once released);
- :class:`Lease` — the REST answer (:class:`chorus_common.topics.Lease` with
  :meth:`Lease.of`). The requests and answers every license gate speaks
  (``LeaseRequest``, ``LeaseRef``, ``LeaseGranted``, ``LeaseReleased``,
  ``LeaseRefused``) are declared in :mod:`chorus_common.topics` and imported from there.

The JSON is the one the service always wrote, so replicas of either version share one
seat table during a rolling upgrade, and every license gate reads either's answers.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from chorus_common.topics import Lease as LeaseDocument

__all__ = ["Lease", "SeatLease", "SeatRecord"]


class SeatLease(BaseModel):
    """Who holds seat ``seat``, under which lease, until when (Unix times)."""

    model_config = ConfigDict(frozen=True)

    lease_id: str
    seat: int
    holder: str
    kind: str
    expires_at: float
    granted_at: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.model_dump(), "expires_in_seconds": round(self.expires_at - time.time(), 3)}


class SeatRecord(BaseModel):
    """The document under ``seat.<n>``: a lease's fields (and its ``expires_in_seconds`` when
    written), or only ``lease_id`` null once released. What is absent is not written."""

    lease_id: str | None = None
    seat: int | None = None
    holder: str | None = None
    kind: str | None = None
    expires_at: float | None = None
    granted_at: float | None = None
    expires_in_seconds: float | None = None

    @classmethod
    def of(cls, lease: SeatLease) -> SeatRecord:
        return cls.model_validate(lease.as_dict())

    def lease(self, seat: int) -> SeatLease | None:
        """The lease it records on ``seat`` (the key's, as always), or None for a free seat."""
        if not self.lease_id:
            return None
        return SeatLease.model_validate(
            {**self.model_dump(exclude={"expires_in_seconds"}), "seat": seat}
        )

    @model_serializer(mode="wrap")
    def _only_present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        return {k: v for k, v in out.items() if k == "lease_id" or v is not None}


class Lease(LeaseDocument):
    """A seat lease: who holds which seat, until when."""

    @classmethod
    def of(cls, lease: SeatLease) -> Lease:
        return cls.model_validate(lease.as_dict())
