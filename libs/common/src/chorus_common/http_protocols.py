"""uvicorn's protocols with what a public HTTP edge needs: a header-read deadline and abort.

uvicorn has no header-read timeout: its keep-alive timer stops at the first
byte of a request, so a client that sends half a request line and then one
header byte now and then (slowloris) holds a connection forever; 200 of them
did against the gateway. :class:`HeaderTimeoutHttpProtocol` closes a
connection that has not delivered a request's complete headers within
``CHORUS_HTTP_HEADER_TIMEOUT_SECONDS`` of connecting or of its previous
response (``408`` if a request had begun).

Both protocols also put ``scope["extensions"]["chorus.transport"]`` in every
scope: ``abort`` (closing a connection whose client stopped reading waits for
the unread bytes to drain, which never happens, so a streaming route that
drops such a client must abort the transport instead) and ``socket`` (to bound
its kernel send buffer); WebSocket scopes also get ``send_frames``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request as WsRequest

from chorus_common.config import ChorusSettings

__all__ = [
    "AbortableWebSocketProtocol",
    "HeaderTimeoutHttpProtocol",
    "server_options",
    "text_frame",
    "transport_extension",
]

TRANSPORT_EXTENSION = "chorus.transport"
_TIMEOUT_BODY = b"request headers not complete in time\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def transport_extension(scope: Any) -> dict[str, Any]:
    """What these protocols put in the scope (``{}`` under a server without them)."""
    extension: dict[str, Any] = scope.get("extensions", {}).get(TRANSPORT_EXTENSION, {})
    return extension


class HeaderTimeoutHttpProtocol(HttpToolsProtocol):
    """httptools with a deadline for each request's headers; see the module docstring."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_begun = False
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._request_begun:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        self.scope["extensions"] = {
            TRANSPORT_EXTENSION: {
                "abort": self.transport.abort,
                "socket": self.transport.get_extra_info("socket"),
            }
        }

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._request_begun = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            # the next request on this kept-alive connection gets the same deadline
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._disarm_header_timer()
        super().handle_websocket_upgrade()


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with abort and a batched frame write in the scope.

    ``send_frames(data)`` writes already framed text messages in one transport
    write, waiting while the client's buffer is full like ``websocket.send``
    does. A fan-out to hundreds of clients frames each message once rather than
    once per client and makes one write per burst rather than one per message:
    per-frame ASGI sends were most of a publish's latency with 200 WebSocket
    subscribers. Uncompressed frames stay valid under permessage-deflate.
    """

    def handle_connect(self, event: WsRequest) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][TRANSPORT_EXTENSION] = {
                "abort": self.transport.abort,
                "socket": self.transport.get_extra_info("socket"),
                "send_frames": self._send_frames,
            }

    async def _send_frames(self, data: bytes) -> None:
        await self.writable.wait()
        if self.disconnected or self.close_sent or self.transport.is_closing():
            raise ConnectionError("the WebSocket is closed")
        self.transport.write(data)


def server_options(settings: ChorusSettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` keywords every service runs with (and the in-process tests)."""
    http = type(
        "HeaderTimeoutHttpProtocol",
        (HeaderTimeoutHttpProtocol,),
        {"header_timeout": settings.http_header_timeout_seconds},
    )
    # compressing each frame once per client would let any subscriber multiply the CPU
    # a fan-out costs; clients fall back to uncompressed frames
    return {"http": http, "ws": AbortableWebSocketProtocol, "ws_per_message_deflate": False}
