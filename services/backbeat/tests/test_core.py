"""The clock, budget and health rules of BACKBEAT, without a network."""

from hypothesis import given
from hypothesis import strategies as st

from chorus_backbeat.budgets import AgentWatch, OperationBook
from chorus_backbeat.clock import BeatClock
from chorus_common.backbeat import HybridLogicalClock, Phase, StatusClaim, hlc_key


def claim(
    op: str,
    phase: Phase,
    beat: int,
    kind: str = "dht.store",
    budget: int | None = None,
    agent: str = "a",
) -> StatusClaim:
    return StatusClaim(
        agent_id=agent,
        beat_index=beat,
        state="executing",
        hlc="1:0:a",
        operation_id=op,
        kind=kind,
        phase=phase,
        budget_beats=budget,
    )


@given(st.floats(1, 600), st.floats(1, 600), st.floats(0, 1000), st.floats(0, 1000))
def test_retempo_never_moves_the_index_back(bpm1: float, bpm2: float, t1: float, dt: float) -> None:
    clock = BeatClock(epoch=0.0, tempo_bpm=bpm1)
    before = clock.index_at(t1)
    after = clock.retempo(t1, bpm2)
    assert after.index_at(t1) > before or after.index_at(t1) == before + 1
    assert after.index_at(t1 + dt) >= before + 1


def test_hlc_orders_events_even_when_the_wall_clock_goes_back() -> None:
    a, b = HybridLogicalClock("a"), HybridLogicalClock("b")
    s1 = a.now(physical_ms=1000)
    s2 = b.observe(s1, physical_ms=900)  # b's clock is behind
    s3 = b.now(physical_ms=950)
    assert hlc_key(s1) < hlc_key(s2) < hlc_key(s3)


def test_budget_from_history_and_overrun() -> None:
    book = OperationBook(quantile=0.95, min_samples=5)
    for i, taken in enumerate([2, 2, 3, 2, 3]):
        book.apply(claim(f"o{i}", Phase.STARTED, 0), pulse_index=10)
        book.apply(claim(f"o{i}", Phase.COMPLETED, 0), pulse_index=10 + taken)
    assert book.budget("dht.store") == 3
    book.apply(claim("slow", Phase.STARTED, 0), pulse_index=20)
    ended = book.apply(claim("slow", Phase.COMPLETED, 0), pulse_index=29)
    assert ended is not None and ended.overrun
    explicit = OperationBook()
    explicit.apply(claim("x", Phase.STARTED, 0, budget=10), pulse_index=0)
    done = explicit.apply(claim("x", Phase.FAILED, 0, budget=10), pulse_index=4)
    assert done is not None and not done.overrun and done.phase == "failed"


def test_drifting_and_silent_agents() -> None:
    watch = AgentWatch(drift_tolerance=2, silence_beats=4)
    watch.apply(claim("p", Phase.STARTED, 100, agent="ok"), pulse_index=100)
    watch.apply(claim("q", Phase.STARTED, 90, agent="late"), pulse_index=100)
    assert watch.health("ok", 101)[0] == "on_time"
    assert watch.health("late", 101)[0] == "drifting"
    assert watch.health("ok", 106)[0] == "silent"
