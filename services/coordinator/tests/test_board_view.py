"""The live board view on a real bus: it follows every writer, keeps only live work in full,
counts finished work once, shows its own writes at once, and heals when its watch is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chorus_common.bus import Bus
from chorus_common.testing import wait_until
from chorus_common.topology import BUCKET_TASKS
from chorus_coordinator.board import TaskBoard, tasks_bucket
from chorus_coordinator.board_view import BoardView


@pytest.fixture
async def view(bus_client: Bus) -> AsyncIterator[BoardView]:
    view = BoardView(tasks_bucket(bus_client), stale_after=1.0)
    await view.start()
    yield view
    await view.stop()


async def other_board(bus: Bus) -> TaskBoard:
    """A writer that is not the view's replica (another coordinator, say)."""
    return TaskBoard(tasks_bucket(bus), claim_ttl=60)


def task(n: int) -> dict[str, object]:
    return {"id": f"t{n}", "repository": "r", "title": f"task {n}"}


async def test_follows_another_writer_and_keeps_only_live_work(
    bus_client: Bus, view: BoardView
) -> None:
    board = await other_board(bus_client)
    for n in range(30):
        await board.announce(task(n))
    for n in range(20):
        await board.claim(f"t{n}", "alice" if n < 12 else "bob")
    for n in range(10):
        await board.complete(f"t{n}", "alice")
    for n in range(12, 16):
        await board.complete(f"t{n}", "bob")
    await board.complete("t16", "bob", success=False)  # back to open, a failure on bob's record

    want = {"open": 11, "claimed": 5, "completed": 14}
    await wait_until(lambda: view.counts() == want, timeout=10, message=f"{want}")
    assert sorted(t.id for t in view.tasks()) == sorted(
        [f"t{n}" for n in range(16, 30)] + ["t10", "t11"]
    )
    assert all(t.status != "completed" for t in view.tasks())
    assert view.load() == {"alice": 2, "bob": 3}
    assert (view.completed_by("alice"), view.completed_by("bob")) == (10, 4)
    assert view.failed_by("bob") == 1 and view.failed_by("alice") == 0
    assert await view.check_fresh()

    # a rebuilt view (a fresh watch over the same bucket) draws the same picture
    await view.rebuild()
    assert view.counts() == want and view.load() == {"alice": 2, "bob": 3}
    assert (view.completed_by("alice"), view.failed_by("bob")) == (10, 1)


async def test_own_writes_show_at_once_and_count_once(bus_client: Bus, view: BoardView) -> None:
    board = TaskBoard(tasks_bucket(bus_client), 60, wrote=view.wrote)
    await board.announce(task(1))
    await board.claim("t1", "alice")
    assert view.load() == {"alice": 1}  # no wait: the next assignment in a round sees it
    await board.complete("t1", "alice")
    assert view.counts() == {"open": 0, "claimed": 0, "completed": 1}
    # the watch delivers the same three revisions later; none of them counts again
    await wait_until(view.check_fresh, timeout=10, message="watch caught up")
    assert view.counts() == {"open": 0, "claimed": 0, "completed": 1}
    assert view.completed_by("alice") == 1 and view.tasks() == []


async def test_heals_when_its_watch_consumer_is_lost(bus_client: Bus, view: BoardView) -> None:
    board = await other_board(bus_client)
    await board.announce(task(1))
    await wait_until(lambda: view.counts()["open"] == 1, timeout=10, message="first task")
    # the server loses the watch's consumer (as when the NATS node holding it dies)
    stream = f"KV_{BUCKET_TASKS}"
    for info in await bus_client.jetstream.consumers_info(stream):
        await bus_client.jetstream.delete_consumer(stream, info.name)
    for n in range(2, 6):
        await board.announce(task(n))

    async def caught_up() -> bool:
        await view.check_fresh()
        return view.counts()["open"] == 5

    await wait_until(caught_up, timeout=30, message="view shows the tasks written after the loss")
    assert sorted(t.id for t in view.tasks()) == ["t1", "t2", "t3", "t4", "t5"]
