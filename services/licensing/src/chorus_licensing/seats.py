"""Cluster seat leases in the ``chorus-leases`` KV bucket: one key per seat, claimed by compare-and-set.

With ``seats`` keys ``seat.0 … seat.N-1`` and at most one holder per key,
no interleaving of requests from any number of processes can grant more
holders than seats. An expired lease is taken over by CAS on its revision.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from chorus_common.errors import ConflictError, ForbiddenError, NotFoundError

__all__ = ["SeatLease", "SeatTable"]


@dataclass(frozen=True)
class SeatLease:
    lease_id: str
    seat: int
    holder: str
    kind: str
    expires_at: float
    granted_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id,
            "seat": self.seat,
            "holder": self.holder,
            "kind": self.kind,
            "expires_at": self.expires_at,
            "granted_at": self.granted_at,
            "expires_in_seconds": round(self.expires_at - time.time(), 3),
        }


def _decode(data: bytes | None, seat: int) -> SeatLease | None:
    if not data:
        return None
    doc = json.loads(data)
    if not doc.get("lease_id"):
        return None
    return SeatLease(
        doc["lease_id"], seat, doc["holder"], doc["kind"], doc["expires_at"], doc["granted_at"]
    )


class SeatTable:
    def __init__(self, kv: KeyValue, seats: int, ttl: float) -> None:
        self.kv, self.seats, self.ttl = kv, seats, ttl
        self.expirations = 0

    async def _read(self, seat: int) -> tuple[SeatLease | None, int | None]:
        try:
            entry = await self.kv.get(f"seat.{seat}")
        except KeyNotFoundError:
            return None, None
        return _decode(entry.value, seat), entry.revision

    async def leases(self) -> list[SeatLease]:
        now = time.time()
        out = []
        for seat in range(self.seats):
            lease, _ = await self._read(seat)
            if lease is not None and lease.expires_at > now:
                out.append(lease)
        return out

    async def grant(self, holder: str, kind: str) -> SeatLease:
        now = time.time()
        for seat in range(self.seats):
            current, revision = await self._read(seat)
            if current is not None and current.expires_at > now:
                if current.holder == holder and current.kind == kind:
                    return await self.renew(current.lease_id)  # the same holder asking again
                continue
            lease = SeatLease(
                f"{seat}-{secrets.token_hex(8)}", seat, holder, kind, now + self.ttl, now
            )
            data = json.dumps(lease.as_dict()).encode()
            try:
                if revision is None:
                    await self.kv.create(f"seat.{seat}", data)
                else:
                    await self.kv.update(f"seat.{seat}", data, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another process won this seat; try the next
            except Exception as exc:
                if "wrong last sequence" in str(exc).lower():
                    continue
                raise
            if current is not None:
                self.expirations += 1
            return lease
        raise ForbiddenError(
            f"all {self.seats} seats of the license are taken; release one or extend the license",
            reason="no_free_seat",
        )

    def _seat_of(self, lease_id: str) -> int:
        try:
            seat = int(lease_id.split("-", 1)[0])
        except ValueError:
            raise NotFoundError(f"no lease {lease_id!r}") from None
        if not 0 <= seat < self.seats:
            raise NotFoundError(f"no lease {lease_id!r}")
        return seat

    async def renew(self, lease_id: str) -> SeatLease:
        seat = self._seat_of(lease_id)
        current, revision = await self._read(seat)
        now = time.time()
        if current is None or current.lease_id != lease_id or revision is None:
            raise NotFoundError(f"lease {lease_id!r} no longer exists; request a new one")
        if current.expires_at <= now:
            raise ConflictError(f"lease {lease_id!r} expired; request a new one")
        renewed = SeatLease(
            lease_id, seat, current.holder, current.kind, now + self.ttl, current.granted_at
        )
        try:
            await self.kv.update(
                f"seat.{seat}", json.dumps(renewed.as_dict()).encode(), last=revision
            )
        except KeyWrongLastSequenceError:
            raise ConflictError(
                f"lease {lease_id!r} changed concurrently; request a new one"
            ) from None
        return renewed

    async def release(self, lease_id: str) -> None:
        seat = self._seat_of(lease_id)
        current, revision = await self._read(seat)
        if current is None or current.lease_id != lease_id or revision is None:
            raise NotFoundError(f"lease {lease_id!r} does not exist")
        try:
            await self.kv.update(
                f"seat.{seat}", json.dumps({"lease_id": None}).encode(), last=revision
            )
        except KeyWrongLastSequenceError:
            raise ConflictError(f"lease {lease_id!r} changed concurrently") from None
