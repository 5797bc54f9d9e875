"""Leader leases: one holder at a time, terms grow, a stale term is refused."""

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.bus import Bus
from chorus_common.errors import ConflictError
from chorus_common.leadership import LeaderLease, LeaseRecord, LeaseRules, current_term
from chorus_common.testing import wait_until


def test_holder_stops_before_a_contender_may_start() -> None:
    holder = LeaseRules(me="a", ttl=1.0, margin=0.25)
    contender = LeaseRules(me="b", ttl=1.0, margin=0.25)
    holder.renewed(sent_at=10.0)  # write lands at 10.0 + network delay
    record = LeaseRecord("a", 3, 1.0)
    assert not contender.may_take_over(record, revision=7, now=10.05)
    assert holder.holding(10.7) and not holder.holding(10.75)
    assert not contender.may_take_over(record, revision=7, now=11.0)
    assert contender.may_take_over(record, revision=7, now=11.05)


@given(
    sent=st.floats(0, 1e6),
    delay=st.floats(0, 5),
    ttl=st.floats(0.1, 60),
    probe=st.floats(0, 120),
)
def test_no_instant_where_both_act(sent: float, delay: float, ttl: float, probe: float) -> None:
    holder = LeaseRules(me="a", ttl=ttl, margin=ttl * 0.25)
    contender = LeaseRules(me="b", ttl=ttl, margin=ttl * 0.25)
    holder.renewed(sent)
    seen = sent + delay  # the contender sees the write no earlier than it was sent
    contender.observe(revision=1, now=seen)
    now = seen + probe
    taking_over = contender.may_take_over(LeaseRecord("a", 1, ttl), revision=1, now=now)
    assert not (taking_over and holder.holding(now))


def test_released_lease_is_free_at_once() -> None:
    rules = LeaseRules(me="b", ttl=5, margin=1)
    assert rules.may_take_over(LeaseRecord(None, 4, 5), revision=9, now=0.0)


async def _lease(bus: Bus, holder: str, **kw: object) -> LeaderLease:
    lease = await LeaderLease.open(bus.jetstream, "test", holder, ttl=0.6, **kw)
    lease.start()
    return lease


async def test_single_leader_then_failover_with_higher_term(bus_client: Bus) -> None:
    a = await _lease(bus_client, "a")
    term_a = await a.wait_until_leader(5)
    b = await _lease(bus_client, "b")
    await asyncio.sleep(1.5)  # several renewals: b must not take over a live lease
    assert a.is_leader and not b.is_leader
    # crash of a: no release, renewals stop
    assert a._task is not None
    a._task.cancel()
    term_b = await b.wait_until_leader(5)
    assert term_b == term_a + 1
    assert await current_term(a.kv, "test") == ("b", term_b)
    with pytest.raises(ConflictError):
        b.require_term(term_a)
    b.require_term(term_b)
    await b.stop()


async def test_a_contender_steps_when_the_lease_comes_due_not_at_its_interval(
    bus_client: Bus,
) -> None:
    """A contender that steps rarely still takes over as soon as a crashed holder's lease
    runs out: its next step is moved to that moment."""
    a = await _lease(bus_client, "a")
    term_a = await a.wait_until_leader(5)
    b = await _lease(bus_client, "b", interval=60.0)
    await asyncio.sleep(1.0)
    assert a.is_leader and not b.is_leader
    assert a._task is not None
    a._task.cancel()  # crash: no release
    assert await b.wait_until_leader(10) == term_a + 1  # not 60 s later
    await b.stop()


def test_a_released_or_past_due_lease_does_not_make_a_contender_spin() -> None:
    lease = LeaderLease(kv=None, scope="s", holder="b", ttl=1.0, interval=0.25)  # type: ignore[arg-type]
    assert lease._next_step_in() == 0.25  # nothing seen yet
    lease._takeover_at = time.monotonic() + 0.05
    assert lease._next_step_in() <= 0.06
    lease._takeover_at = time.monotonic() - 1  # due but not taken: not eligible, or lost
    assert lease._next_step_in() == 0.25


async def test_graceful_release_hands_over_immediately(bus_client: Bus) -> None:
    elected: list[tuple[str, int]] = []
    demoted: list[tuple[str, int]] = []
    a = await _lease(bus_client, "a")
    a.on_demoted.append(lambda t: _record(demoted, "a", t))
    term_a = await a.wait_until_leader(5)
    b = await _lease(bus_client, "b")
    b.on_elected.append(lambda t: _record(elected, "b", t))
    await a.stop(release=True)
    assert demoted == [("a", term_a)]
    await wait_until(lambda: elected, timeout=2, message="b elected quickly")
    assert elected == [("b", term_a + 1)]
    await b.stop()


async def _record(into: list[tuple[str, int]], who: str, term: int) -> None:
    into.append((who, term))


async def test_stop_returns_when_the_loop_swallows_a_cancellation(bus_client: Bus) -> None:
    """Found by the fuzzer (POST /v1/stepdown hung): on Python 3.11 a nats-py request can
    swallow the cancel() that stop() sends, and the renewal loop carried on for ever."""
    lease = await LeaderLease.open(bus_client.jetstream, "swallow", "a", ttl=1.0)
    swallowed = asyncio.Event()

    async def renewal_loop_that_swallows_once() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # what asyncio.wait_for does when the reply won the race
        await asyncio.Event().wait()  # the loop goes on until cancelled again

    loop = lease._task = asyncio.create_task(renewal_loop_that_swallows_once())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(lease.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "stop() waits for ever on a loop that swallowed its cancel"
        assert swallowed.is_set() and loop.done()
    finally:
        for task in (stopping, loop):
            task.cancel()


async def test_a_holder_that_may_no_longer_hold_gives_the_lease_up_at_once(
    bus_client: Bus,
) -> None:
    """``may_hold`` false (its license seat went away): the holder releases the key, so a
    contender takes over within a step, not after the ttl, and the holder never takes it back."""
    seat = {"a": True}
    demoted: list[int] = []
    a = await LeaderLease.open(
        bus_client.jetstream, "test", "a", ttl=5.0, may_hold=lambda: seat["a"]
    )
    a.on_demoted.append(lambda term: _append(demoted, term))
    a.start()
    term_a = await a.wait_until_leader(5)
    b = await LeaderLease.open(bus_client.jetstream, "test", "b", ttl=5.0)
    b.start()
    await asyncio.sleep(0.5)
    assert a.is_leader and not b.is_leader
    seat["a"] = False
    started = time.monotonic()
    a.poke()
    assert await b.wait_until_leader(5) == term_a + 1
    assert time.monotonic() - started < 2.5  # well inside the 5 s ttl: released, not expired
    await wait_until(lambda: demoted == [term_a], timeout=5, message="a demoted")
    await b.stop()  # released: free at once, but a still may not hold it
    await asyncio.sleep(1.0)
    assert not a.is_leader and await current_term(a.kv, "test") == (None, term_a + 1)
    seat["a"] = True
    a.poke()
    assert await a.wait_until_leader(5) == term_a + 2
    await a.stop()


async def _append(into: list[int], term: int) -> None:
    into.append(term)
