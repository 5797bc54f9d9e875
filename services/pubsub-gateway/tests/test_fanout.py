"""The fan-out core under the subscriptions: one shared log per filter, staggered wake-ups.

The end-to-end behaviour (stalled SSE/WebSocket clients dropped over real
sockets while a reader gets everything) is in test_subscriptions.py; these
pin the log's own rules, which a socket test cannot reach exactly.
"""

from __future__ import annotations

import asyncio

from chorus_gateway.streaming import Delivered, FanoutLog, Staggered, Subscriber


def _item(i: int) -> Delivered:
    return Delivered("chorus.coord.task_progress", f'{{"n": {i}}}'.encode(), None)


async def test_readers_share_one_log_and_a_stalled_one_is_dropped_past_its_queue() -> None:
    log = FanoutLog(queue_size=16)
    fast, stalled = (Subscriber("chorus.>", 16, "sse") for _ in range(2))
    for sub in (fast, stalled):
        sub.log.leave(sub)
        sub.log = log
        log.join(sub)
    got: list[int] = []

    async def read() -> None:
        async for batch in fast.batches():
            got.extend(int(item.data.split(b" ")[1][:-1]) for item in batch.items)
            if got and got[-1] == 99:
                return

    reader = asyncio.create_task(read())
    for i in range(100):
        log.append(_item(i))
        if i % 4 == 3:
            await asyncio.sleep(0.02)  # the reader keeps up: past the linger every 4 messages
    await asyncio.wait_for(reader, 5)
    assert got == list(range(100))  # in order, nothing missed
    assert stalled.reason is not None and "more than 16 messages" in stalled.reason
    await asyncio.wait_for(stalled.dropped.wait(), 1)
    assert stalled not in log.readers
    # what every live reader has taken is forgotten: the log stays bounded
    assert len(log.items) <= log.queue_size + log.slack


async def test_readers_woken_together_share_one_rendered_write() -> None:
    log = FanoutLog(queue_size=100)
    subs = [Subscriber("chorus.>", 100, "ws") for _ in range(3)]
    for sub in subs:
        sub.log.leave(sub)
        sub.log = log
        log.join(sub)
    bodies = []

    async def first_write(sub: Subscriber) -> None:
        async for batch in sub.batches():
            bodies.append(batch.body("frame"))
            return

    tasks = [asyncio.create_task(first_write(s)) for s in subs]
    await asyncio.sleep(0)
    for i in range(5):
        log.append(_item(i))
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert bodies[0] is bodies[1] is bodies[2]  # joined once
    assert bodies[0] == b"".join(_item(i).frame for i in range(5))


async def test_at_most_per_turn_callbacks_run_in_one_turn_of_the_loop() -> None:
    stagger = Staggered(per_turn=4)
    ran: list[int] = []
    for i in range(10):
        stagger.call(lambda i=i: ran.append(i))
    assert ran == []
    await asyncio.sleep(0)
    assert ran == [0, 1, 2, 3]
    for _ in range(3):
        await asyncio.sleep(0)
    assert ran == list(range(10))
