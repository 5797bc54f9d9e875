"""cancel_and_wait ends a loop even when a cancellation is swallowed (Python 3.11 wait_for)."""

import asyncio
import contextlib

from chorus_common.aio import cancel_and_wait


async def test_a_loop_that_swallows_one_cancellation_still_ends() -> None:
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            # what asyncio.wait_for in 3.11 can do when the reply lands with the cancel
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # one cancel() was not enough
    await asyncio.wait_for(cancel_and_wait(task), timeout=5)
    assert task.done()


async def test_failed_and_missing_tasks_are_fine() -> None:
    async def boom() -> None:
        raise RuntimeError("already failed")

    failed = asyncio.create_task(boom())
    await asyncio.sleep(0)
    await cancel_and_wait([failed])
    await cancel_and_wait(None)
    assert failed.done()
