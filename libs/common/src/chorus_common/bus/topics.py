"""Typed core NATS subjects: one pydantic model per subject, JSON on the wire.

Beats, status claims, election messages, DHT RPC and announcements are core NATS
(fire-and-forget or request/reply), not envelopes in a stream. A :class:`Topic`
names the subject (``{part}`` placeholders for its variable tokens) and the
model, so every publisher encodes and every subscriber decodes the same way, an
undecodable message is counted and dropped in one place, and the AsyncAPI
document can be generated from the declared topics.
"""

from __future__ import annotations

import contextlib
import logging
import re
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ValidationError

from chorus_common import tracing
from chorus_common.bus.decoding import decode_as
from chorus_common.bus.errors import bus_errors
from chorus_common.errors import MalformedBodyError

if TYPE_CHECKING:
    from chorus_common.bus.core import Bus

__all__ = ["DECLARED", "Received", "Topic", "TopicSpec", "declare_topic"]

log = logging.getLogger("chorus.bus")

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
_PART = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class TopicSpec(Generic[M]):
    """A subject pattern and the model it carries, declared once at import time."""

    pattern: str
    model: type[M]
    description: str = ""
    #: the model of the answer, for request/reply topics
    reply: type[BaseModel] | None = None
    parts: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(_PART.findall(self.pattern)))

    @property
    def wildcard(self) -> str:
        """The pattern with every ``{part}`` as ``*``: what a subscriber listens on."""
        return _PART.sub("*", self.pattern)

    def subject(self, **parts: str) -> str:
        """The pattern filled in; every part must be given and be one subject token."""
        missing = set(self.parts) - set(parts)
        if missing:
            raise ValueError(f"{self.pattern}: missing {', '.join(sorted(missing))}")
        for name, value in parts.items():
            if not value or any(c in value for c in ".*> \t\r\n"):
                raise ValueError(f"{self.pattern}: {name}={value!r} is not one subject token")
        return string.Formatter().vformat(self.pattern, (), parts)

    def decode(self, data: bytes) -> M:
        return decode_as(self.model, data, f"a message on {self.pattern}")


#: every topic declared with :func:`declare_topic`, for the AsyncAPI document
DECLARED: list[TopicSpec[Any]] = []


def declare_topic(
    pattern: str, model: type[M], description: str = "", reply: type[BaseModel] | None = None
) -> TopicSpec[M]:
    spec = TopicSpec(pattern, model, description, reply)
    DECLARED.append(spec)
    return spec


@dataclass(frozen=True)
class Received(Generic[M]):
    """A decoded message with what it came with (signature headers, the raw bytes)."""

    value: M
    subject: str
    headers: dict[str, str]
    data: bytes
    _msg: Msg

    async def respond(self, answer: BaseModel | bytes) -> None:
        payload = answer if isinstance(answer, bytes) else answer.model_dump_json().encode()
        with contextlib.suppress(Exception):  # the requester may have gone
            await self._msg.respond(payload)


class Topic(Generic[M]):
    """A :class:`TopicSpec` on a bus: publish, subscribe, request."""

    def __init__(self, bus: Bus, spec: TopicSpec[M]) -> None:
        self.bus, self.spec = bus, spec

    async def publish(
        self, value: M, *, headers: dict[str, str] | None = None, **parts: str
    ) -> None:
        """Fire-and-forget on the pattern filled in with ``parts``."""
        await self.publish_raw(
            self.spec.subject(**parts), value.model_dump_json().encode(), headers
        )

    async def publish_raw(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish bytes already encoded (and, say, signed over) on one of the topic's subjects."""
        headers = dict(headers or {})
        tracing.inject(headers)
        with bus_errors(f"publish on {subject}"):
            await self.bus.client.publish(subject, data, headers=headers or None)

    async def subscribe(
        self,
        handler: Callable[[Received[M]], Awaitable[None]],
        *,
        queue: str = "",
        subject: str | None = None,
        on_malformed: Callable[[Msg, Exception], None] | None = None,
        malformed_reply: Callable[[Exception], BaseModel | bytes] | None = None,
        pending_msgs_limit: int | None = None,
    ) -> Subscription:
        """Call ``handler`` with each decoded message on the topic (or on ``subject``, one
        of its subjects); a message that does not decode is logged, handed to
        ``on_malformed`` (to count it) and dropped — or, for a request, answered with
        ``malformed_reply(error)`` so the requester hears why rather than timing out.
        ``queue``: one member of the group gets each message."""

        async def deliver(msg: Msg) -> None:
            try:
                value = self.spec.decode(msg.data)
            except MalformedBodyError as exc:
                log.warning("%s", exc.detail)
                if on_malformed is not None:
                    on_malformed(msg, exc)
                if malformed_reply is not None and msg.reply:
                    answer = malformed_reply(exc)
                    payload = answer if isinstance(answer, bytes) else answer.model_dump_json()
                    with contextlib.suppress(Exception):
                        await msg.respond(
                            payload if isinstance(payload, bytes) else payload.encode()
                        )
                return
            await handler(Received(value, msg.subject, dict(msg.headers or {}), msg.data, msg))

        options: dict[str, Any] = {"cb": deliver, "queue": queue}
        if pending_msgs_limit is not None:
            options["pending_msgs_limit"] = pending_msgs_limit
        with bus_errors(f"subscribe to {subject or self.spec.wildcard}"):
            return await self.bus.client.subscribe(subject or self.spec.wildcard, **options)

    async def request(
        self,
        value: M,
        reply: type[R],
        *,
        timeout: float = 2.0,
        headers: dict[str, str] | None = None,
        **parts: str,
    ) -> R:
        """Send ``value`` and decode the answer as ``reply`` (503 when nobody answers in time)."""
        subject = self.spec.subject(**parts)
        headers = dict(headers or {})
        tracing.inject(headers)
        with bus_errors(f"request on {subject}"):
            msg = await self.bus.client.request(
                subject, value.model_dump_json().encode(), timeout=timeout, headers=headers or None
            )
        try:
            return reply.model_validate_json(msg.data)
        except ValidationError:
            raise MalformedBodyError(
                f"the answer on {subject} is not a {reply.__name__}: {msg.data[:200]!r}"
            ) from None
