"""NATS micro endpoints: how the license gate in every other service asks for its seat.

Served at ``chorus.svc.licensing.lease-grant``, ``.lease-renew`` and ``.lease-release``;
each takes a JSON object and answers ``{"ok": true, …}`` or ``{"ok": false, "error": <problem>}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.micro.request import Request as MicroRequest

from chorus_common.errors import ChorusError, RequestInvalidError, UnavailableError
from chorus_common.service import MicroHandler
from chorus_licensing.keeper import LicenseKeeper

__all__ = ["seat_endpoints"]

Work = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


async def answer(request: MicroRequest, work: Work) -> None:
    """Run ``work`` on the request's JSON object and respond with its result or its problem."""
    try:
        try:
            body = json.loads(request.data or b"{}")
        except (ValueError, RecursionError):
            raise RequestInvalidError("the request is not JSON: send a JSON object") from None
        if not isinstance(body, dict):
            raise RequestInvalidError("the request must be a JSON object")
        result = await work(body)
        await request.respond(json.dumps({"ok": True, **(result or {})}).encode())
    except ChorusError as exc:
        await request.respond(json.dumps({"ok": False, "error": exc.to_problem()}).encode())
    except nats.errors.Error as exc:  # the seat table did not answer: the gate retries
        error = UnavailableError(f"the seat table did not answer ({exc}); try again")
        await request.respond(json.dumps({"ok": False, "error": error.to_problem()}).encode())


def text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise RequestInvalidError(f"{name} is required: a string of 1 to 128 characters")
    return value


def seat_endpoints(keeper: LicenseKeeper) -> dict[str, MicroHandler]:
    """The lease endpoints, by name, granting from ``keeper``'s seat table."""

    async def grant_lease(d: dict[str, Any]) -> dict[str, Any]:
        return (await keeper.grant(text(d, "holder"), text(d, "kind", "service"))).as_dict()

    async def renew_lease(d: dict[str, Any]) -> dict[str, Any]:
        return (await keeper.renew(text(d, "lease_id"))).as_dict()

    async def release_lease(d: dict[str, Any]) -> dict[str, Any]:
        await keeper.release(text(d, "lease_id"))
        return {}

    async def grant(req: MicroRequest) -> None:
        await answer(req, grant_lease)

    async def renew(req: MicroRequest) -> None:
        await answer(req, renew_lease)

    async def release(req: MicroRequest) -> None:
        await answer(req, release_lease)

    return {"lease-grant": grant, "lease-renew": renew, "lease-release": release}
