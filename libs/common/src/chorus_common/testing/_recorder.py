"""Everything a service receives over HTTP, bodies included, for tests that say what it never saw."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common.service import Service


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def contains(self, secret: str | bytes) -> bool:
        """Whether ``secret`` appears in the request line, a header or the body."""
        text = secret.encode() if isinstance(secret, str) else secret
        head = f"{self.method} {self.path} {self.headers}".encode()
        return text in head or text in self.body


@dataclass
class RequestRecorder:
    """Wraps a service's ASGI app (:meth:`attach`, before it serves) and keeps each request.

    A pure ASGI wrapper rather than an ``http`` middleware, so the body is seen as the
    service reads it, chunk by chunk, without being consumed on its behalf.
    """

    requests: list[ReceivedRequest] = field(default_factory=list)

    def attach(self, service: Service) -> RequestRecorder:
        service.app.add_middleware(_Recording, recorder=self)
        return self

    def received(self, secret: str | bytes) -> bool:
        """Whether ``secret`` reached the service in any request."""
        return any(r.contains(secret) for r in self.requests)

    def bodies(self, method: str, path_prefix: str = "") -> list[bytes]:
        return [
            r.body for r in self.requests if r.method == method and r.path.startswith(path_prefix)
        ]


class _Recording:
    def __init__(self, app: ASGIApp, recorder: RequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        request = ReceivedRequest(
            scope["method"],
            scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            + (f"?{query}" if query else ""),
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        )
        self.recorder.requests.append(request)

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.body += message.get("body", b"")
            return message

        await self.app(scope, recording, send)
