"""Cluster seat leases in the ``chorus-leases`` KV bucket: one key per seat, claimed by compare-and-set.

With ``seats`` keys ``seat.0 … seat.N-1`` and at most one holder per key,
no interleaving of requests from any number of processes can grant more
holders than seats. An expired lease is taken over by CAS on its revision.
"""

from __future__ import annotations

import secrets
import time

from chorus_common.bus import Bucket, Bus
from chorus_common.errors import ConflictError, ForbiddenError, NotFoundError
from chorus_common.topology import BUCKET_LEASES
from chorus_licensing.documents import SeatLease, SeatRecord

__all__ = ["SeatLease", "SeatTable", "seat_bucket"]


def seat_bucket(bus: Bus) -> Bucket[SeatRecord]:
    """The seats of ``chorus-leases`` (``seat.<n>``), by seat number."""
    return bus.bucket(BUCKET_LEASES, SeatRecord, prefix="seat.")


class SeatTable:
    def __init__(self, records: Bucket[SeatRecord], seats: int, ttl: float) -> None:
        self.records, self.seats, self.ttl = records, seats, ttl
        self.expirations = 0

    async def _read(self, seat: int) -> tuple[SeatLease | None, int | None]:
        found = await self.records.get(str(seat))
        if found is None:
            return None, None
        return found.value.lease(seat), found.revision

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
                lease_id=f"{seat}-{secrets.token_hex(8)}",
                seat=seat,
                holder=holder,
                kind=kind,
                expires_at=now + self.ttl,
                granted_at=now,
            )
            try:
                if revision is None:
                    await self.records.create(str(seat), SeatRecord.of(lease))
                else:
                    await self.records.update(str(seat), SeatRecord.of(lease), revision)
            except ConflictError:
                continue  # another process won this seat; try the next
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
        renewed = current.model_copy(update={"expires_at": now + self.ttl})
        try:
            await self.records.update(str(seat), SeatRecord.of(renewed), revision)
        except ConflictError:
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
            await self.records.update(str(seat), SeatRecord(lease_id=None), revision)
        except ConflictError:
            raise ConflictError(f"lease {lease_id!r} changed concurrently") from None
