"""What a request body must be before a route reads it.

Three rules, checked once for every route of every service (``Service``'s body
guard), so no parser ever meets a hostile body:

- its ``Content-Type`` is one the route takes (``application/json`` also admits a
  ``charset=utf-8`` parameter and any ``application/*+json`` type); a body without
  a ``Content-Type`` is refused, an empty body without one passes (the route then
  says what is missing) → 415 naming what is taken;
- a textual body (JSON, a form, ``text/*``) is UTF-8 → 400;
- JSON nests at most :data:`MAX_JSON_DEPTH` arrays and objects deep → 400. Python's
  ``json`` recurses per level and raises ``RecursionError`` near 1,000, and
  validation, canonical encoding and redaction recurse again after it.

The checks are plain functions on bytes; the ASGI shell lives in ``chorus_common.service``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from chorus_common.errors import MalformedBodyError, RequestInvalidError, UnsupportedMediaTypeError

__all__ = [
    "FORM_BODY",
    "MAX_JSON_DEPTH",
    "check_body",
    "check_depth",
    "is_json",
    "loads_json",
    "media_type",
    "parse_request",
]

#: the deepest JSON a route accepts: envelopes and records nest a handful of levels
MAX_JSON_DEPTH = 64
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
#: ``openapi_extra=`` for a route that reads a form itself (it declares no body field)
FORM_BODY: dict[str, Any] = {
    "requestBody": {"content": {FORM: {"schema": {"type": "object"}}}},
}

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")


def media_type(content_type: str | None) -> tuple[str | None, str | None]:
    """``text/plain; charset=UTF-8`` → ``("text/plain", "utf-8")``; lower case, no spaces."""
    if not content_type:
        return None, None
    kind, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower() or None, charset


def is_json(media: str) -> bool:
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def _takes(accepted: Collection[str], media: str) -> bool:
    if media in accepted or "*/*" in accepted:
        return True
    major = media.split("/", 1)[0]
    return f"{major}/*" in accepted or (JSON in accepted and is_json(media))


def check_body(body: bytes, content_type: str | None, accepted: Collection[str]) -> None:
    """Raise unless ``body`` may reach a route that takes the ``accepted`` media types."""
    if not body:
        return
    media, charset = media_type(content_type)
    expected = ", ".join(sorted(accepted))
    if media is None:
        raise UnsupportedMediaTypeError(
            f"the request has a body but no Content-Type; send Content-Type: {expected}",
            accepted=sorted(accepted),
        )
    if not _takes(accepted, media):
        raise UnsupportedMediaTypeError(
            f"Content-Type {media} is not taken here; send {expected}",
            accepted=sorted(accepted),
        )
    textual = is_json(media) or media == FORM or media.startswith("text/")
    if not textual:
        return
    if charset not in (None, "utf-8", "utf8") and (is_json(media) or media == FORM):
        raise UnsupportedMediaTypeError(
            f"charset {charset} is not taken here; send UTF-8 ({media}; charset=utf-8)",
            accepted=sorted(accepted),
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(
            f"the body is not UTF-8: byte {exc.start} is {body[exc.start : exc.start + 1]!r}"
        ) from None
    if is_json(media):
        check_depth(body)


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise if JSON in ``body`` nests arrays and objects deeper than ``limit``.

    A scan of the brackets outside strings, without parsing: it stops at the first
    level too deep, so 100,000 nested ``[`` cost as much as ``limit`` of them.
    """
    if body.count(b"[") + body.count(b"{") <= limit:  # too few to nest too deep: most bodies
        return
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    depth = 0
    for i, char in enumerate(brackets):
        if char in _OPENING:
            depth += 1
            if depth > limit:
                raise MalformedBodyError(
                    f"the JSON body nests more than {limit} arrays or objects deep "
                    f"(found at bracket {i + 1}); flatten it",
                    limit=limit,
                )
        else:
            depth -= 1


def loads_json(body: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for a body a route reads itself: UTF-8 and depth checked first.

    Raises :class:`MalformedBodyError` for those, ``ValueError`` for a syntax error
    (the route names it in its own terms).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"the body is not UTF-8 (byte {exc.start})") from None
    check_depth(body, limit)
    return json.loads(text)


M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], data: bytes) -> M:
    """A request body (a NATS micro request's, say) as ``model``, or a 422 problem naming
    where and what, as the REST routes' validation answers it (empty means ``{}``)."""
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
