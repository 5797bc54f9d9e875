"""Stopping background tasks for certain: the one way every service and library loop ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: asyncio.Task[Any] | Iterable[asyncio.Task[Any]] | None) -> None:
    """Cancel tasks and wait until each has really ended, swallowing what they raise.

    Python 3.11's ``asyncio.wait_for`` (inside every nats-py request) swallows a
    cancellation that lands just as its reply arrives, so a loop cancelled once
    can carry on and a plain ``await task`` waits for ever, turning a SIGTERM
    drain into a kill. Asking again until the task is done ends it.
    """
    if tasks is None:
        return
    pending = [tasks] if isinstance(tasks, asyncio.Task) else list(tasks)
    for task in pending:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
