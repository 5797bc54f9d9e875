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
from pydantic import BaseModel, ValidationError

from chorus_common.errors import ChorusError, RequestInvalidError
from chorus_common.service import MicroHandler
from chorus_common.topics import (
    LeaseGranted,
    LeaseRef,
    LeaseRefused,
    LeaseReleased,
    LeaseRequest,
)
from chorus_licensing.keeper import LicenseKeeper

__all__ = ["answer", "request_body", "seat_endpoints"]

M = TypeVar("M", bound=BaseModel)


def request_body(model: type[M], data: bytes) -> M:
    """The request as ``model``, or a 422 problem the gate can read (where and what)."""
    try:
        return model.model_validate_json(data or b"{}")
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"]) or "request"
        raise RequestInvalidError(f"{where}: {first['msg']}", errors=errors) from None


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
            body = request_body(LeaseRequest, req.data)
            lease = await keeper.grant(body.holder, body.kind)
            return LeaseGranted.model_validate(lease.as_dict())

        await answer(req, work)

    async def renew(req: MicroRequest) -> None:
        async def work() -> LeaseGranted:
            lease = await keeper.renew(request_body(LeaseRef, req.data).lease_id)
            return LeaseGranted.model_validate(lease.as_dict())

        await answer(req, work)

    async def release(req: MicroRequest) -> None:
        async def work() -> LeaseReleased:
            await keeper.release(request_body(LeaseRef, req.data).lease_id)
            return LeaseReleased()

        await answer(req, work)

    return {"lease-grant": grant, "lease-renew": renew, "lease-release": release}
