"""Routes of included routers get the same guards as the app's own (FastAPI includes lazily)."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pytest
from fastapi import APIRouter, WebSocket

from chorus_common.config import ChorusSettings
from chorus_common.dependencies import Provided, Requires
from chorus_common.identity import Scope
from chorus_common.service import Service


class Clock:
    def now(self) -> float:
        return 42.0


router = APIRouter()


@router.get("/v1/now")
async def now(clock: Annotated[Clock, Provided(Clock)]) -> dict[str, float]:
    return {"now": clock.now()}


@router.post("/v1/tick", dependencies=[Requires(Scope.ADMIN)])
async def tick() -> dict[str, bool]:
    return {"ticked": True}


open_socket = APIRouter()


@open_socket.websocket("/v1/socket")
async def socket(ws: WebSocket) -> None:
    await ws.accept()


def _service(*included: APIRouter) -> Service:
    class Probe(Service):
        name = "probe"
        routers: ClassVar[tuple[APIRouter, ...]] = included

    settings = ChorusSettings(nats_url="nats://127.0.0.1:1", admin_token="t", read_tokens="r")
    return Probe(settings)


def test_an_included_routers_reads_writes_and_documents_carry_their_scopes() -> None:
    service = _service(router)
    service.provide(Clock())
    paths = service.app.openapi()["paths"]
    assert paths["/v1/now"]["get"]["x-chorus-scope"] == "read"
    assert paths["/v1/tick"]["post"]["x-chorus-scope"] == "admin"


def test_a_websocket_of_an_included_router_without_a_scope_is_refused_at_build_time() -> None:
    with pytest.raises(TypeError, match="must name its scope"):
        _service(open_socket)
