"""One exception tree for the whole constellation.

Every error a user can cause or see derives from :class:`ChorusError`, carries a
stable ``code`` and an HTTP ``status``, and is turned into
``application/problem+json`` once, at the HTTP edge (``chorus_common.service``)::

    ChorusError
    ├── RequestInvalidError         request body or parameters fail validation
    ├── MalformedBodyError          request body unreadable: not UTF-8, nested too deep
    ├── UnsupportedMediaTypeError   request body of a Content-Type the route does not take
    ├── HttpStatusError             unknown route, wrong method
    ├── ConfigError                 bad CHORUS_* value at start
    ├── EnvelopeError               an envelope cannot be accepted
    │   ├── UnknownTypeError        type not among the 31
    │   ├── PayloadError            payload does not fit the type's model
    │   ├── OversizeError           encoded envelope over the configured limit
    │   ├── MalformedEnvelopeError  not JSON, or envelope fields wrong
    │   ├── HopLimitError           meta-discussion forwarded too often
    │   └── ClockSkewError          created_at too far from the receiver's clock
    ├── FeedError                   a feed does not verify
    │   ├── BadSignatureError
    │   ├── UnknownKeyError
    │   ├── FeedGapError
    │   ├── FeedForkError
    │   └── FeedReplayError
    ├── UcxlAddressError            an address does not follow the grammar
    ├── SubjectError                a subject or filter has invalid tokens
    ├── AuthError                   missing or wrong bearer token
    ├── ForbiddenError              authenticated, but not allowed (or fail-closed)
    ├── NotFoundError
    ├── ConflictError               compare-and-set lost, duplicate, stale term
    ├── RateLimitedError
    └── UnavailableError            a dependency (bus, storage, upstream) is down
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "BadSignatureError",
    "ChorusError",
    "ClockSkewError",
    "ConfigError",
    "ConflictError",
    "EnvelopeError",
    "FeedError",
    "FeedForkError",
    "FeedGapError",
    "FeedReplayError",
    "ForbiddenError",
    "HopLimitError",
    "HttpStatusError",
    "MalformedBodyError",
    "MalformedEnvelopeError",
    "NotFoundError",
    "OversizeError",
    "PayloadError",
    "RateLimitedError",
    "RequestInvalidError",
    "SubjectError",
    "UcxlAddressError",
    "UnavailableError",
    "UnknownKeyError",
    "UnknownTypeError",
    "UnsupportedMediaTypeError",
]


class ChorusError(Exception):
    """Root of every CHORUS error; ``detail`` is the one-line message shown to users."""

    code: str = "chorus_error"
    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        problem: dict[str, Any] = {
            "type": f"https://chorus.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            problem["instance"] = instance
        # extra details never replace the standard members of the problem document
        problem.update({k: v for k, v in self.extra.items() if k not in problem})
        return problem


class RequestInvalidError(ChorusError):
    """A request body, query or path parameter failed validation at the HTTP edge."""

    code = "request_invalid"
    status = 422
    title = "Invalid request"


class MalformedBodyError(ChorusError):
    """A request body no route should parse (chorus_common.bodies): not UTF-8, too deep."""

    code = "body_malformed"
    status = 400
    title = "Malformed request body"


class UnsupportedMediaTypeError(ChorusError):
    """A request body whose Content-Type the route does not take; ``accepted`` says what does."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class HttpStatusError(ChorusError):
    """A plain HTTP error from routing (unknown path, wrong method)."""

    title = "HTTP error"

    def __init__(self, detail: str, status: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.status = status
        self.code = f"http_{status}"


class ConfigError(ChorusError):
    code = "config_invalid"
    status = 500
    title = "Invalid configuration"


class EnvelopeError(ChorusError):
    code = "envelope_invalid"
    status = 422
    title = "Invalid envelope"


class UnknownTypeError(EnvelopeError):
    code = "unknown_type"
    title = "Unknown message type"


class PayloadError(EnvelopeError):
    code = "payload_invalid"
    title = "Payload does not match its type"


class OversizeError(EnvelopeError):
    code = "oversize"
    status = 413
    title = "Message too large"


class MalformedEnvelopeError(EnvelopeError):
    code = "malformed_envelope"
    status = 400
    title = "Malformed envelope"


class HopLimitError(EnvelopeError):
    code = "hop_limit_exceeded"
    title = "Hop limit exceeded"


class ClockSkewError(EnvelopeError):
    """``created_at`` is further from the receiver's clock than the allowed skew: a stale
    or post-dated envelope would otherwise sort and expire as if sent at that time."""

    code = "clock_skew"
    title = "Clock skew too large"


class FeedError(ChorusError):
    code = "feed_invalid"
    status = 422
    title = "Feed does not verify"


class BadSignatureError(FeedError):
    code = "bad_signature"
    status = 401
    title = "Bad signature"


class UnknownKeyError(FeedError):
    code = "unknown_key"
    status = 401
    title = "Unknown signing key"


class FeedGapError(FeedError):
    code = "feed_gap"
    status = 409
    title = "Gap in feed"


class FeedForkError(FeedError):
    code = "feed_fork"
    status = 409
    title = "Fork in feed"


class FeedReplayError(FeedError):
    code = "feed_replay"
    status = 409
    title = "Replayed feed entry"


class UcxlAddressError(ChorusError):
    code = "ucxl_address_invalid"
    status = 400
    title = "Invalid UCXL address"


class SubjectError(ChorusError):
    code = "subject_invalid"
    status = 400
    title = "Invalid subject"


class AuthError(ChorusError):
    code = "unauthorized"
    status = 401
    title = "Authentication required"


class ForbiddenError(ChorusError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFoundError(ChorusError):
    code = "not_found"
    status = 404
    title = "Not found"


class ConflictError(ChorusError):
    code = "conflict"
    status = 409
    title = "Conflict"


class RateLimitedError(ChorusError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: float, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class UnavailableError(ChorusError):
    code = "unavailable"
    status = 503
    title = "Dependency unavailable"
