"""One way to wait out a NATS server or JetStream that is not there yet."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from chorus_common.errors import UnavailableError

__all__ = ["retry_until"]

log = logging.getLogger("chorus.bus")
T = TypeVar("T")


async def retry_until(
    deadline: float,
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up: Callable[[BaseException], str] = str,
    first_delay: float = 0.1,
    max_delay: float = 2.0,
) -> T:
    """``attempt()`` until it succeeds, backing off from ``first_delay`` to ``max_delay``.

    A failure of a kind in ``retry_on`` is logged and tried again while the next try
    would still start before ``deadline`` (``time.monotonic()``); after that, the last
    one is raised as :class:`UnavailableError` with ``give_up(exc)`` as its detail.
    Anything else is raised at once.
    """
    delay = first_delay
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if time.monotonic() + delay > deadline:
                raise UnavailableError(give_up(exc)) from None
            log.warning("%s not yet: %s; retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
