"""HTTP routes of the gateway: publish, subscribe (SSE, WebSocket), read, verify, discover."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from nats.js.errors import NotFoundError as JsNotFoundError
from pydantic import BaseModel, Field

from chorus_common.bus import EVENTS_STREAM
from chorus_common.envelopes import Envelope, MessageType, envelope_json_schema, type_schemas
from chorus_common.errors import (
    ChorusError,
    EnvelopeError,
    MalformedEnvelopeError,
    NotFoundError,
    OversizeError,
)
from chorus_common.feeds import verify_feed
from chorus_common.service import problem_responses
from chorus_common.subjects import validate_filter
from chorus_gateway.asyncapi import asyncapi_document
from chorus_gateway.streaming import SlowConsumer, Subscription

if TYPE_CHECKING:
    from chorus_gateway.service import GatewayService

AGENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
#: agent ids end up in subjects and KV keys
AgentId = PathParam(
    pattern=AGENT_ID.pattern, description="letters, digits, '_' and '-'", examples=["agent-1"]
)
WS_SLOW_CONSUMER = 4008  # application close code: dropped for falling behind
#: stream sequences are unsigned 64-bit: JetStream refuses anything larger
MAX_SEQ = 2**64 - 1
ENVELOPE_REF = {"$ref": "#/components/schemas/Envelope"}


class EventStream(StreamingResponse):
    """Server-sent events, as the OpenAPI document should say."""

    media_type = "text/event-stream"


def _document_envelopes(app: FastAPI) -> None:
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


class KeyRegistration(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"public_key": "IPsJWfMiQUuMyOKYpYwUvLRN26NXp57XYArZPU_EVlk"}]
        }
    }

    public_key: str = Field(min_length=40, max_length=64, description="Ed25519, URL-safe base64")


async def _json_body(request: Request, limit: int) -> Any:
    body = await request.body()
    if len(body) > limit:
        raise OversizeError(
            f"request body is {len(body)} bytes; the limit is {limit} bytes",
            size=len(body),
            limit=limit,
        )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MalformedEnvelopeError(f"request body is not JSON: {exc}") from None


def install_routes(app: FastAPI, service: GatewayService) -> None:
    settings = service.settings
    can_publish = service.require_bearer(
        settings.publish_tokens, "a publish token (CHORUS_GATEWAY_TOKENS)"
    )
    admin = service.require_admin()

    @app.post(
        "/v1/envelopes",
        dependencies=[Depends(can_publish)],
        tags=["publish"],
        status_code=201,
        responses=problem_responses(400, 409, 413, 422, 429, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ENVELOPE_REF}},
            }
        },
    )
    async def publish_one(request: Request) -> JSONResponse:
        """Publish one envelope; answers with its stream sequence or a problem naming what is wrong."""
        item = await _json_body(request, settings.max_message_bytes)
        if not isinstance(item, dict):
            raise MalformedEnvelopeError("the body must be one envelope (a JSON object)")
        result = (await service.publisher.publish([item]))[0]
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

    @app.post(
        "/v1/envelopes:batch",
        dependencies=[Depends(can_publish)],
        tags=["publish"],
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
    async def publish_batch(request: Request) -> dict[str, Any]:
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
        results = await service.publisher.publish(items)
        accepted = sum(1 for r in results if r.ok)
        return {
            "accepted": accepted,
            "rejected": len(results) - accepted,
            "results": [r.as_dict() for r in results],
        }

    @app.get(
        "/v1/stream",
        tags=["subscribe"],
        response_class=EventStream,
        responses={
            200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
            **problem_responses(400, 503),
        },
    )
    async def stream(
        subject: str = Query("chorus.>", description="NATS subject filter"),
        from_seq: int | None = Query(
            None, ge=1, le=MAX_SEQ, description="replay CHORUS_EVENTS from this sequence"
        ),
        since: datetime | None = Query(None, description="replay CHORUS_EVENTS from this time"),
    ) -> StreamingResponse:
        """Server-sent events: one `message` event per envelope; a slow client gets `error` and is closed."""
        sub = Subscription(service.bus, subject, settings.gateway_subscriber_queue)
        await sub.start(from_seq, since)
        metrics = service.gateway_metrics

        async def events() -> Any:
            metrics.subscribers.labels("sse").inc()
            try:
                yield f": subscribed to {sub.filter}\n\n"
                async for item in sub:
                    metrics.delivered.labels("sse").inc()
                    doc = json.dumps(item.document())
                    ident = f"id: {item.seq}\n" if item.seq else ""
                    yield f"{ident}event: message\ndata: {doc}\n\n"
            except SlowConsumer as exc:
                metrics.dropped.labels("sse").inc()
                yield f"event: error\ndata: {json.dumps({'reason': str(exc)})}\n\n"
            finally:
                metrics.subscribers.labels("sse").dec()
                await sub.close()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.websocket("/v1/ws")
    async def websocket(ws: WebSocket) -> None:
        """WebSocket: one JSON text frame per envelope; close code 4008 when the client falls behind."""
        params = ws.query_params
        try:
            from_seq = int(params["from_seq"]) if "from_seq" in params else None
            if from_seq is not None and not 1 <= from_seq <= MAX_SEQ:
                raise ValueError(f"from_seq must be between 1 and {MAX_SEQ}")
            since = datetime.fromisoformat(params["since"]) if "since" in params else None
            sub = Subscription(
                service.bus, params.get("subject", "chorus.>"), settings.gateway_subscriber_queue
            )
            await sub.start(from_seq, since)
        except (ValueError, ChorusError) as exc:
            await ws.accept()
            reason = exc.detail if isinstance(exc, ChorusError) else f"bad parameter: {exc}"
            await ws.close(code=1008, reason=reason[:120])
            return
        await ws.accept()
        metrics = service.gateway_metrics
        metrics.subscribers.labels("ws").inc()

        async def pump() -> None:
            async for item in sub:
                await ws.send_text(json.dumps(item.document()))
                metrics.delivered.labels("ws").inc()

        async def until_client_leaves() -> None:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass  # clients have nothing to say on this socket

        sender = asyncio.create_task(pump())
        dropped = asyncio.create_task(sub.dropped.wait())
        left = asyncio.create_task(until_client_leaves())
        try:
            await asyncio.wait({sender, dropped, left}, return_when=asyncio.FIRST_COMPLETED)
            if sub.dropped.is_set():
                # the client stopped reading; a blocked send must not keep it attached
                sender.cancel()
                metrics.dropped.labels("ws").inc()
                # the close frame queues behind what the client has not read yet; a client
                # that never reads again is cut off by uvicorn's ping timeout instead
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        ws.close(
                            code=WS_SLOW_CONSUMER, reason="slow consumer: reconnect with from_seq"
                        ),
                        timeout=60,
                    )
        except WebSocketDisconnect:
            pass
        finally:
            for task in (sender, dropped, left):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            metrics.subscribers.labels("ws").dec()
            await sub.close()

    @app.get("/v1/messages", tags=["read"], responses=problem_responses(400, 503))
    async def messages(
        subject: str = Query("chorus.>", description="subject filter inside CHORUS_EVENTS"),
        from_seq: int = Query(1, ge=1, le=MAX_SEQ),
        limit: int = Query(100, ge=1),
    ) -> dict[str, Any]:
        """Read stored envelopes in stream order, from a sequence, up to a limit."""
        validate_filter(subject)
        limit = min(limit, settings.gateway_read_limit_max)
        out: list[dict[str, Any]] = []
        seq = from_seq
        while len(out) < limit:
            try:
                msg = await service.bus.js.get_msg(
                    EVENTS_STREAM, seq=seq, subject=subject, next=True
                )
            except JsNotFoundError:
                break
            assert msg.seq is not None
            try:
                body: Any = json.loads(msg.data or b"")
            except ValueError:
                body = None
            out.append({"seq": msg.seq, "subject": msg.subject, "envelope": body})
            seq = msg.seq + 1
        service.gateway_metrics.reads.inc(len(out))
        return {"subject": subject, "messages": out, "next_seq": seq}

    @app.get("/v1/feeds/{agent}/verify", tags=["read"], responses=problem_responses(404, 503))
    async def verify(agent: str = AgentId) -> dict[str, Any]:
        """Walk an agent's whole feed in the stream and report gaps, forks and bad signatures."""
        key = await service.directory.require_public_key(agent)
        envelopes: list[Envelope] = []
        seq = 1
        while True:
            try:
                msg = await service.bus.js.get_msg(
                    EVENTS_STREAM, seq=seq, subject="chorus.>", next=True
                )
            except JsNotFoundError:
                break
            assert msg.seq is not None
            seq = msg.seq + 1
            if ":" in (msg.headers or {}).get("Nats-Msg-Id", ""):
                continue  # a role/project copy of an envelope counted at its primary subject
            try:
                env = Envelope.decode(msg.data or b"")
            except EnvelopeError:
                continue
            if env.sender == agent:
                envelopes.append(env)
        report = verify_feed(envelopes, key)
        return {
            "agent": agent,
            "ok": report.ok,
            "length": report.length,
            "head": report.head,
            "issues": [
                {"kind": i.kind, "feed_seq": i.seq, "detail": i.detail} for i in report.issues
            ],
        }

    @app.get("/v1/types", tags=["discover"])
    async def types() -> dict[str, Any]:
        """The 31 message types, each with its JSON Schema."""
        schemas = type_schemas()
        return {"count": len(schemas), "types": list(schemas.values())}

    @app.get("/v1/types/{message_type}", tags=["discover"], responses=problem_responses(404))
    async def one_type(
        message_type: str = PathParam(examples=[MessageType.TASK_ANNOUNCEMENT.value]),
    ) -> dict[str, Any]:
        try:
            return type_schemas()[MessageType(message_type).value]
        except ValueError:
            raise NotFoundError(f"unknown message type {message_type!r}") from None

    @app.get("/asyncapi.json", tags=["discover"])
    async def asyncapi() -> dict[str, Any]:
        """An AsyncAPI 3 document of every subject and payload, generated from the models."""
        return asyncapi_document(service.version, settings.nats_url)

    @app.post(
        "/v1/agents/{agent}/keys",
        dependencies=[Depends(admin)],
        tags=["agents"],
        status_code=201,
        responses=problem_responses(409, 503),
    )
    async def register_key(body: KeyRegistration, agent: str = AgentId) -> dict[str, Any]:
        """Register the Ed25519 public key that verifies an agent's feed."""
        doc = await service.directory.register_key(agent, body.public_key)
        return {"agent": agent, "public_key": doc["public_key"]}

    @app.get("/v1/agents/{agent}", tags=["agents"], responses=problem_responses(404, 503))
    async def get_agent(agent: str = AgentId) -> dict[str, Any]:
        doc = await service.directory.get(agent)
        if doc is None:
            raise NotFoundError(f"agent {agent!r} is not registered")
        head = await service.directory.feed_head(agent)
        return {**doc, "feed": {"seq": head.state.seq, "head": head.state.head}}

    _document_envelopes(app)
