"""NATS micro endpoints: how the license gate in every other service asks for its seat.

Served at ``chorus.svc.licensing.lease-grant``, ``.lease-renew`` and ``.lease-release``;
the topics ``LICENSE_GRANT``, ``LICENSE_RENEW`` and ``LICENSE_RELEASE`` of
:mod:`chorus_common.topics`, which every license gate requests. Grant takes a
:class:`~chorus_common.topics.LeaseRequest` (the REST body), renew and release a
:class:`~chorus_common.topics.LeaseRef`; each answers ``{"ok": true, …}``
(:class:`LeaseGranted`, :class:`LeaseReleased`) or ``{"ok": false, "error": <problem>}``
(:class:`LeaseRefused`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.micro.request import Request as MicroRequest
from pydantic import BaseModel

from chorus_common.bodies import parse_request
from chorus_common.errors import ChorusError
from chorus_common.service import MicroHandler
from chorus_common.topics import (
    LeaseGranted,
    LeaseRef,
    LeaseRefused,
    LeaseReleased,
    LeaseRequest,
)
from chorus_licensing.keeper import LicenseKeeper

__all__ = ["answer", "seat_endpoints"]

M = TypeVar("M", bound=BaseModel)


async def answer(request: MicroRequest, work: Callable[[], Awaitable[BaseModel]]) -> None:
    """Respond with what ``work`` answers, or with its problem (a seat table that did not
    answer is a 503 the gate retries)."""
    reply: BaseModel
    try:
        reply = await work()
    except ChorusError as exc:
        reply = LeaseRefused(error=exc.to_problem())
    await request.respond(reply.model_dump_json().encode())


def seat_endpoints(keeper: LicenseKeeper) -> dict[str, MicroHandler]:
    """The lease endpoints, by name, granting from ``keeper``'s seat table."""

    async def grant(req: MicroRequest) -> None:
        async def work() -> LeaseGranted:
            body = parse_request(LeaseRequest, req.data)
            lease = await keeper.grant(body.holder, body.kind)
            return LeaseGranted.model_validate(lease.as_dict())

        await answer(req, work)

    async def renew(req: MicroRequest) -> None:
        async def work() -> LeaseGranted:
            lease = await keeper.renew(parse_request(LeaseRef, req.data).lease_id)
            return LeaseGranted.model_validate(lease.as_dict())

        await answer(req, work)

    async def release(req: MicroRequest) -> None:
        async def work() -> LeaseReleased:
            await keeper.release(parse_request(LeaseRef, req.data).lease_id)
            return LeaseReleased()

        await answer(req, work)

    return {"lease-grant": grant, "lease-renew": renew, "lease-release": release}
