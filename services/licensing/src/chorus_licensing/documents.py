"""The licensing service's documents: seat leases in ``chorus-leases`` and the seat
endpoints' requests and answers, as pydantic models.

- :class:`SeatLease` — a held seat; :class:`SeatRecord` — what ``seat.<n>`` holds (a
  lease, or ``{"lease_id": null}`` once released);
- :class:`LeaseRequest` and :class:`Lease` — the REST body and answer, which the micro
  endpoints share: :class:`LeaseRef` (renew, release), :class:`LeaseGranted`,
  :class:`LeaseReleased`, :class:`LeaseRefused`.

The JSON is the one the service always wrote, so replicas of either version share one
seat table during a rolling upgrade, and every license gate reads either's answers.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

__all__ = [
    "Lease",
    "LeaseGranted",
    "LeaseRef",
    "LeaseRefused",
    "LeaseReleased",
    "LeaseRequest",
    "SeatLease",
    "SeatRecord",
]


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


class LeaseRequest(BaseModel):
    holder: str = Field(min_length=1, max_length=128)
    kind: str = Field(default="service", min_length=1, max_length=64)


class Lease(BaseModel):
    """A seat lease: who holds which seat, until when."""

    lease_id: str
    seat: int
    holder: str
    kind: str
    expires_at: float
    granted_at: float
    expires_in_seconds: float

    @classmethod
    def of(cls, lease: SeatLease) -> Lease:
        return cls.model_validate(lease.as_dict())


class LeaseRef(BaseModel):
    """A micro request naming a lease (renew, release); REST has it in the path."""

    lease_id: str = Field(min_length=1, max_length=128)


class LeaseGranted(Lease):
    """A micro answer to grant or renew: ``ok`` and the lease."""

    ok: Literal[True] = True


class LeaseReleased(BaseModel):
    ok: Literal[True] = True


class LeaseRefused(BaseModel):
    ok: Literal[False] = False
    #: the refusal as a problem document (RFC 9457)
    error: dict[str, Any]
