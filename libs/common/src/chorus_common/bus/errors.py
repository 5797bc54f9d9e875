"""NATS and JetStream failures as the ChorusErrors callers handle, mapped in one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import nats.errors
import nats.js.errors

from chorus_common.errors import ChorusError, ConflictError, NotFoundError, UnavailableError

__all__ = ["WRONG_LAST_SEQUENCE", "bus_errors", "translate"]

#: JetStream's error code for a write whose expected last sequence no longer holds
WRONG_LAST_SEQUENCE = 10071
#: JetStream's error code for a create of a key that exists
KEY_EXISTS = 10164


def translate(exc: BaseException, what: str) -> ChorusError | None:
    """The ChorusError ``exc`` stands for, or None when it is not a NATS failure."""
    if isinstance(exc, ChorusError):
        return exc
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        return ConflictError(f"{what}: changed by someone else meanwhile", reason="revision")
    if isinstance(exc, nats.js.errors.KeyNotFoundError):
        return NotFoundError(f"{what}: not found")
    if isinstance(exc, nats.js.errors.NotFoundError):
        return NotFoundError(f"{what}: not found")
    if isinstance(exc, nats.js.errors.APIError):
        if exc.err_code in (WRONG_LAST_SEQUENCE, KEY_EXISTS):
            return ConflictError(f"{what}: changed by someone else meanwhile", reason="revision")
        if exc.code == 503 or isinstance(exc, nats.js.errors.ServiceUnavailableError):
            return UnavailableError(f"{what}: JetStream is unavailable ({exc.description})")
        return UnavailableError(f"{what}: JetStream refused ({exc.description})")
    if isinstance(exc, nats.errors.NoRespondersError):
        return UnavailableError(f"{what}: nobody answers")
    if isinstance(exc, (nats.errors.TimeoutError, TimeoutError)):
        return UnavailableError(f"{what}: timed out")
    if isinstance(exc, nats.errors.Error):
        return UnavailableError(f"{what}: {exc!s}")
    return None


@contextlib.contextmanager
def bus_errors(what: str) -> Iterator[None]:
    """Raise NATS failures inside as ChorusErrors naming ``what`` (503, 404 or 409)."""
    try:
        yield
    except Exception as exc:
        mapped = translate(exc, what)
        if mapped is None or mapped is exc:
            raise
        raise mapped from None
