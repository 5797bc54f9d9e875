"""HTTP routes of the gateway: publish, subscribe (SSE, WebSocket), read, verify, discover.

Module-level endpoints on :data:`router`; each names what it needs (the publisher,
the subscriber hub, settings, …) as a dependency the service provides.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse

from chorus_common.bodies import loads_json
from chorus_common.bus import EVENTS_STREAM, Bus
from chorus_common.dependencies import Provided, Requires
from chorus_common.envelopes import MessageType, envelope_json_schema, type_schemas
from chorus_common.errors import (
    ChorusError,
    ForbiddenError,
    MalformedEnvelopeError,
    NotFoundError,
    OversizeError,
)
from chorus_common.identity import Identity, Scope
from chorus_common.registry import AgentDirectory
from chorus_common.service import BODY_CHECKED, problem_responses
from chorus_common.subjects import validate_filter
from chorus_gateway.asyncapi import asyncapi_document
from chorus_gateway.documents import (
    AgentDocument,
    BatchResult,
    FeedAuditPage,
    MessagesPage,
    PublishResult,
    StoredMessage,
    TypeList,
)
from chorus_gateway.metrics import GatewayMetrics
from chorus_gateway.publishing import Publisher
from chorus_gateway.settings import GatewaySettings
from chorus_gateway.streaming import Subscriber, SubscriberEvents, SubscriberHub, serve_websocket
from chorus_gateway.verification import FeedAuditor

__all__ = ["AGENT_ID", "AgentId", "document_envelopes", "own_senders_only", "router"]

AGENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
#: agent ids end up in subjects and KV keys
AgentId = PathParam(
    pattern=AGENT_ID.pattern, description="letters, digits, '_' and '-'", examples=["agent-1"]
)
#: stream sequences are unsigned 64-bit: JetStream refuses anything larger
MAX_SEQ = 2**64 - 1
ENVELOPE_REF = {"$ref": "#/components/schemas/Envelope"}


class EventStream(StreamingResponse):
    """Server-sent events, as the OpenAPI document should say."""

    media_type = "text/event-stream"


def document_envelopes(app: FastAPI) -> None:
    """The envelope schema (and its $defs) as OpenAPI components, for the publish bodies."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            envelope = envelope_json_schema()
            defs = envelope.pop("$defs", {})
            envelope.pop("$schema", None)
            # the same typing as "if type is X then payload is X's model", spelled as one
            # branch per type: OpenAPI tools (and the fuzzer) generate from oneOf, not if/then
            envelope["oneOf"] = [
                {
                    "properties": {
                        "type": rule["if"]["properties"]["type"],
                        "payload": rule["then"]["properties"]["payload"],
                    }
                }
                for rule in envelope.pop("allOf", [])
            ]
            moved = json.loads(
                json.dumps({**defs, "Envelope": envelope}).replace(
                    '"#/$defs/', '"#/components/schemas/'
                )
            )
            for name, schema in moved.items():
                schemas.setdefault(name, schema)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _json_body(request: Request, limit: int) -> Any:
    """The body as JSON. The service's body guard has checked its type, UTF-8 and depth
    (a 500-envelope batch's depth scan costs as much as parsing it), and left the body it
    checked in the request state; a body it did not check goes through ``loads_json``."""
    body = await request.body()
    if len(body) > limit:
        raise OversizeError(
            f"request body is {len(body)} bytes; the limit is {limit} bytes",
            size=len(body),
            limit=limit,
        )
    checked = getattr(request.state, BODY_CHECKED, None)
    try:
        return json.loads(body) if checked == body else loads_json(body)
    except ValueError as exc:
        raise MalformedEnvelopeError(f"request body is not JSON: {exc}") from None


def own_senders_only(identity: Identity, items: list[Any]) -> None:
    """An agent's token publishes that agent's envelopes only (403 naming the first other).

    Signatures already stop forging another agent's feed; this stops an enrolled agent
    from spending another sender's rate limit or feed sequence with envelopes that are
    bound to fail. Operator, service and admin tokens publish for any sender.
    """
    if identity.kind != "agent" or identity.allows(Scope.ADMIN):
        return
    for index, item in enumerate(items):
        sender = item.get("sender") if isinstance(item, dict) else None
        if sender != identity.name:
            raise ForbiddenError(
                f"item {index}: the token of agent {identity.name!r} may not publish as {sender!r}",
                reason="sender_mismatch",
                index=index,
            )


router = APIRouter()

CanPublish = Annotated[Identity, Requires(Scope.PUBLISH)]
Settings = Annotated[GatewaySettings, Provided(GatewaySettings)]


@router.post(
    "/v1/envelopes",
    tags=["publish"],
    status_code=201,
    response_model=PublishResult,
    responses=problem_responses(400, 409, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ENVELOPE_REF}},
        }
    },
)
async def publish_one(
    request: Request,
    identity: CanPublish,
    settings: Settings,
    publisher: Annotated[Publisher, Provided(Publisher)],
) -> JSONResponse:
    """Publish one envelope; answers with its stream sequence or a problem naming what is wrong."""
    item = await _json_body(request, settings.max_message_bytes)
    if not isinstance(item, dict):
        raise MalformedEnvelopeError("the body must be one envelope (a JSON object)")
    own_senders_only(identity, [item])
    result = (await publisher.publish([item]))[0]
    if not result.ok:
        assert result.error is not None
        headers = {}
        if "retry_after_seconds" in result.error:
            headers["Retry-After"] = str(max(1, math.ceil(result.error["retry_after_seconds"])))
        return JSONResponse(
            result.error,
            status_code=result.error["status"],
            media_type="application/problem+json",
            headers=headers,
        )
    return JSONResponse(result.as_dict(), status_code=201)


@router.post(
    "/v1/envelopes:batch",
    tags=["publish"],
    response_model=BatchResult,
    responses=problem_responses(400, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {
                                "type": "object",
                                "required": ["envelopes"],
                                "properties": {
                                    "envelopes": {"type": "array", "items": ENVELOPE_REF}
                                },
                            },
                            {"type": "array", "items": ENVELOPE_REF},
                        ]
                    }
                }
            },
        }
    },
)
async def publish_batch(
    request: Request,
    identity: CanPublish,
    settings: Settings,
    publisher: Annotated[Publisher, Provided(Publisher)],
) -> JSONResponse:
    """Publish up to CHORUS_GATEWAY_BATCH_MAX envelopes; every item gets its own result."""
    body = await _json_body(request, settings.max_message_bytes * 64)
    items = body.get("envelopes") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise MalformedEnvelopeError('the body must be {"envelopes": [...]} or a JSON array')
    if len(items) > settings.gateway_batch_max:
        raise OversizeError(
            f"batch of {len(items)} envelopes; the limit is {settings.gateway_batch_max}",
            size=len(items),
            limit=settings.gateway_batch_max,
        )
    own_senders_only(identity, items)
    results = await publisher.publish(items)
    accepted = sum(1 for r in results if r.ok)
    # the items are built by the publisher itself: validating them again against the
    # response model would cost more than the rest of a large batch's answer
    return JSONResponse(
        {
            "accepted": accepted,
            "rejected": len(results) - accepted,
            "results": [r.as_dict() for r in results],
        }
    )


@router.get(
    "/v1/stream",
    tags=["subscribe"],
    response_class=EventStream,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problem_responses(400, 503),
    },
)
async def stream(
    settings: Settings,
    hub: Annotated[SubscriberHub, Provided(SubscriberHub)],
    bus: Annotated[Bus, Provided(Bus)],
    metrics: Annotated[GatewayMetrics, Provided(GatewayMetrics)],
    subject: str = Query(
        "chorus.>",
        description="subject filter over envelope subjects (chorus.> minus internal ones)",
    ),
    from_seq: int | None = Query(
        None, ge=1, le=MAX_SEQ, description="replay CHORUS_EVENTS from this sequence"
    ),
    since: datetime | None = Query(None, description="replay CHORUS_EVENTS from this time"),
) -> SubscriberEvents:
    """Server-sent events: one `message` event per envelope; a slow client gets `error` and is closed."""
    sub = Subscriber(subject, settings.gateway_subscriber_queue, "sse")
    if from_seq is not None or since is not None:
        await sub.start_replay(bus, from_seq, since)
    else:
        await hub.attach(sub)
    return SubscriberEvents(sub, hub, metrics)


# the read scope named here, not left to the app-wide read guard: FastAPI applies an
# app's dependencies to an included router's HTTP routes, not to its websocket routes
@router.websocket("/v1/ws", dependencies=[Requires(Scope.READ)])
async def websocket(
    ws: WebSocket,
    settings: Settings,
    hub: Annotated[SubscriberHub, Provided(SubscriberHub)],
    bus: Annotated[Bus, Provided(Bus)],
    metrics: Annotated[GatewayMetrics, Provided(GatewayMetrics)],
) -> None:
    """WebSocket: one JSON text frame per envelope; close code 1013 when the client falls behind."""
    params = ws.query_params
    try:
        from_seq = int(params["from_seq"]) if "from_seq" in params else None
        if from_seq is not None and not 1 <= from_seq <= MAX_SEQ:
            raise ValueError(f"from_seq must be between 1 and {MAX_SEQ}")
        since = datetime.fromisoformat(params["since"]) if "since" in params else None
        sub = Subscriber(params.get("subject", "chorus.>"), settings.gateway_subscriber_queue, "ws")
        if from_seq is not None or since is not None:
            await sub.start_replay(bus, from_seq, since)
        else:
            await hub.attach(sub)
    except (ValueError, ChorusError) as exc:
        await ws.accept()
        reason = exc.detail if isinstance(exc, ChorusError) else f"bad parameter: {exc}"
        await ws.close(code=1008, reason=reason[:123])
        return
    await serve_websocket(ws, sub, hub, metrics)


@router.get("/v1/messages", tags=["read"], responses=problem_responses(400, 503))
async def messages(
    settings: Settings,
    bus: Annotated[Bus, Provided(Bus)],
    metrics: Annotated[GatewayMetrics, Provided(GatewayMetrics)],
    subject: str = Query("chorus.>", description="subject filter inside CHORUS_EVENTS"),
    from_seq: int = Query(1, ge=1, le=MAX_SEQ),
    limit: int = Query(100, ge=1),
) -> MessagesPage:
    """Read stored envelopes in stream order, from a sequence, up to a limit."""
    validate_filter(subject)
    limit = min(limit, settings.gateway_read_limit_max)
    out: list[StoredMessage] = []
    seq = from_seq
    while len(out) < limit:
        msg = await bus.stream_message(EVENTS_STREAM, seq, subject)
        if msg is None:
            break
        try:
            body: Any = json.loads(msg.data or b"")
        except ValueError:
            body = None
        out.append(StoredMessage(seq=msg.seq, subject=msg.subject, envelope=body))
        seq = msg.seq + 1
    metrics.reads.inc(len(out))
    return MessagesPage(subject=subject, messages=out, next_seq=seq)


@router.get("/v1/feeds/{agent}/verify", tags=["read"], responses=problem_responses(404, 422, 503))
async def verify(
    auditor: Annotated[FeedAuditor, Provided(FeedAuditor)],
    agent: str = AgentId,
    limit: int = Query(1000, ge=1, le=10_000, description="feed entries to verify at most"),
    after: str | None = Query(
        None, max_length=200, description="the `next` of a previous answer, to continue"
    ),
) -> FeedAuditPage:
    """Audit an agent's stored feed for gaps, forks and bad signatures, in bounded pages.

    The gateway keeps each agent's verified prefix: a call reads only what was stored
    since (at most CHORUS_GATEWAY_VERIFY_SCAN_MAX stream messages); `complete` is false
    when it stopped early, and `next` continues from there (`after=`), on any replica.
    """
    return FeedAuditPage.model_validate(await auditor.verify(agent, after, limit))


@router.get("/v1/types", tags=["discover"])
async def types() -> TypeList:
    """The 31 message types, each with its JSON Schema."""
    schemas = type_schemas()
    return TypeList(count=len(schemas), types=list(schemas.values()))


@router.get("/v1/types/{message_type}", tags=["discover"], responses=problem_responses(404))
async def one_type(
    message_type: str = PathParam(examples=[MessageType.TASK_ANNOUNCEMENT.value]),
) -> dict[str, Any]:
    """One message type's JSON Schema."""
    try:
        return type_schemas()[MessageType(message_type).value]
    except ValueError:
        raise NotFoundError(f"unknown message type {message_type!r}") from None


@router.get("/asyncapi.json", tags=["discover"])
async def asyncapi(request: Request, settings: Settings) -> dict[str, Any]:
    """An AsyncAPI 3 document of every subject and payload, generated from the models."""
    return asyncapi_document(request.app.version, settings.nats_url)


@router.get(
    "/v1/agents/{agent}",
    tags=["agents"],
    responses=problem_responses(404, 503),
    response_model=AgentDocument,
    response_model_exclude_unset=True,
)
async def get_agent(
    directory: Annotated[AgentDirectory, Provided(AgentDirectory)], agent: str = AgentId
) -> AgentDocument:
    """An agent's registry document and where its feed stands."""
    doc = await directory.get(agent)
    if doc is None:
        raise NotFoundError(f"agent {agent!r} is not registered")
    head = await directory.feed_head(agent)
    return AgentDocument.model_validate(
        {**doc, "feed": {"seq": head.state.seq, "head": head.state.head}}
    )
