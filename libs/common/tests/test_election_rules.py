"""The election rules without a network: triggers, winners, stability windows, hysteresis and
smoothing. Scores are given directly here (the pure core is the one place they may be pinned)."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.election import (
    ADMIN_STEPPED_DOWN,
    ElectionRules,
    Score,
    ScoreSmoother,
    State,
    StepDownReason,
    Timings,
    Trigger,
)
from chorus_common.election.rules import ElectionStarted, StepDown, quantise, ranking_key

T = Timings(
    heartbeat=0.1,
    failover=0.5,
    lease_ttl=0.4,
    grace=0.3,
    jitter=0.05,
    min_tenure=2.0,
    min_interval=1.0,
)


def rules(node: str = "b") -> ElectionRules:
    return ElectionRules(node_id=node, timings=T, rng=random.Random(1))


def test_score_weights_and_bounds() -> None:
    s = Score({"uptime": 1, "capabilities": 1, "resources": 0, "network": 0, "experience": 0})
    assert s.total == pytest.approx(0.5)
    with pytest.raises(ValueError):
        Score({"uptime": 1.5})
    custom = Score(
        {"uptime": 1},
        weights={"uptime": 1, "capabilities": 0, "resources": 0, "network": 0, "experience": 0},
    )
    assert custom.total == 1.0


@given(
    st.lists(
        st.tuples(st.from_regex(r"n[0-9]{1,3}", fullmatch=True), st.floats(0, 1)),
        min_size=1,
        max_size=20,
        unique_by=lambda t: t[0],
    )
)
def test_highest_score_wins_and_ties_go_to_the_lowest_id(cands: list[tuple[str, float]]) -> None:
    r = rules("zz-observer")
    for node, total in cands:
        r.on_candidacy(node, total, {}, now=0.0)
    best = r.best(0.1)
    assert best is not None
    top = max(total for _, total in cands)
    tied = sorted(node for node, total in cands if round(total, 9) == round(top, 9))
    assert best.node_id == tied[0]
    assert ranking_key(best.node_id, best.total) == min(ranking_key(n, t) for n, t in cands)


def test_no_admin_discovered_after_grace_then_best_candidate_may_acquire() -> None:
    a, b = rules("a"), rules("b")
    for r in (a, b):
        r.start(0.0)
        r.on_candidacy("a", 0.9, {}, 0.0)
        r.on_candidacy("b", 0.5, {}, 0.0)
    assert a.tick(0.1) == [] and a.state is State.DISCOVERING
    actions = a.tick(0.35)
    assert (
        isinstance(actions[0], ElectionStarted)
        and actions[0].trigger is Trigger.NO_ADMIN_DISCOVERED
    )
    b.tick(0.35)
    assert not a.may_acquire(0.35)  # randomized delay first
    a.on_candidacy("a", 0.9, {}, 0.4)
    a.on_candidacy("b", 0.5, {}, 0.4)
    b.on_candidacy("a", 0.9, {}, 0.4)
    b.on_candidacy("b", 0.5, {}, 0.4)
    assert a.may_acquire(0.45) and not b.may_acquire(0.45)


def test_discovered_admin_is_followed_without_an_election() -> None:
    r = rules()
    r.start(0.0)
    r.on_discovery_response("a", 7, 0.05)
    assert r.state is State.COMPLETE and r.admin == "a" and r.admin_term == 7
    assert r.tick(0.4) == []
    assert not r.may_acquire(0.4)


def test_heartbeat_timeout_triggers_an_election() -> None:
    r = rules()
    r.start(0.0)
    r.on_heartbeat("a", 3, 0.1)
    assert r.tick(0.5) == []
    actions = r.tick(0.61)
    assert [a.trigger for a in actions if isinstance(a, ElectionStarted)] == [
        Trigger.ADMIN_HEARTBEAT_TIMEOUT
    ]
    assert r.state is State.ELECTING and r.admin is None


def test_split_brain_detected_and_stale_admin_steps_down() -> None:
    r = rules("a")
    r.start(0.0)
    r.became_admin(4, 0.0)
    actions = r.on_heartbeat("c", 5, 0.1)
    assert any(
        isinstance(a, ElectionStarted) and a.trigger is Trigger.SPLIT_BRAIN_DETECTED
        for a in actions
    )
    assert any(isinstance(a, StepDown) for a in actions)
    assert r.admin == "c" and r.admin_term == 5


def test_manual_and_quorum_restored_triggers() -> None:
    r = rules()
    r.start(0.0)
    assert r.manual(1.0).trigger is Trigger.MANUAL_TRIGGER
    assert r.state is State.ELECTING
    assert r.reconnected(2.0).trigger is Trigger.QUORUM_RESTORED


def announce(r: ElectionRules, totals: dict[str, float], start: float, end: float) -> None:
    """Every node announces ``totals`` every heartbeat from ``start`` to ``end``."""
    steps = round((end - start) / T.heartbeat)
    for i in range(steps + 1):
        for node, total in totals.items():
            r.on_candidacy(node, total, {}, start + i * T.heartbeat)


def test_higher_score_does_not_challenge_before_minimum_tenure() -> None:
    r = rules("b")
    r.start(0.0)
    r.became_admin(1, 0.0)
    announce(r, {"b": 0.4, "a": 0.9}, 0.0, 0.2)
    assert r.tick(0.2) == []  # within minimum tenure
    announce(r, {"b": 0.4, "a": 0.9}, 0.3, 2.1)
    actions = r.tick(2.1)
    (step,) = [a for a in actions if isinstance(a, StepDown)]
    assert step.reason is StepDownReason.CHALLENGE
    assert step.challenger == "a" and step.challenger_total == 0.9 and step.admin_total == 0.4
    assert "0.9000" in step.detail and "0.4000" in step.detail


def test_a_challenger_within_the_margin_never_unseats_the_admin() -> None:
    r = rules("b")
    r.start(0.0)
    r.became_admin(1, 0.0)
    announce(r, {"b": 0.40, "a": 0.45}, 0.0, 30.0)  # better by exactly the margin
    assert r.tick(30.0) == []
    announce(r, {"b": 0.40, "a": 0.4501}, 30.1, 31.0)  # by more than the margin
    assert [a.reason for a in r.tick(31.0) if isinstance(a, StepDown)] == [StepDownReason.CHALLENGE]


def test_a_newly_heard_challenger_waits_for_minimum_tenure_of_its_own() -> None:
    r = rules("b")
    r.start(0.0)
    r.became_admin(1, 0.0)
    announce(r, {"b": 0.4}, 0.0, 10.0)
    announce(r, {"b": 0.4, "a": 0.9}, 10.1, 11.0)  # a arrives late with a better score
    assert r.tick(11.0) == []  # its first readings must not win
    announce(r, {"b": 0.4, "a": 0.9}, 11.1, 12.2)
    assert any(isinstance(a, StepDown) for a in r.tick(12.2))


def test_with_no_admin_alive_the_best_score_wins_without_a_margin() -> None:
    a = rules("a")
    a.start(0.0)
    a.on_heartbeat("old", 1, 0.0)
    announce(a, {"a": 0.401, "c": 0.400}, 0.0, 0.6)
    a.tick(0.6)  # the admin timed out
    assert a.state is State.ELECTING
    assert a.may_acquire(0.6 + T.jitter * 1.5 + 0.01)  # ahead by far less than the margin


def hold_seat_under_noise(
    node_totals: dict[str, float], noise: list[float], margin: float, admin: str
) -> bool:
    """Run an admin for 60 s of heartbeats while every node's total wobbles by ``noise``;
    True when it never stepped down."""
    r = ElectionRules(node_id=admin, timings=T, challenge_margin=margin)
    r.start(0.0)
    r.became_admin(1, 0.0)
    for i in range(600):
        now = i * T.heartbeat
        for j, (node, total) in enumerate(sorted(node_totals.items())):
            wobble = noise[(i * 7 + j) % len(noise)]
            r.on_candidacy(node, min(1.0, max(0.0, total + wobble)), {}, now)
        if any(isinstance(a, StepDown) for a in r.tick(now)):
            return False
    return True


@given(
    base=st.floats(0.1, 0.8),
    spread=st.floats(0.0, 0.0499),
    noise=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=30),
)
def test_noise_below_the_margin_never_moves_the_admin(
    base: float, spread: float, noise: list[float]
) -> None:
    """Three nodes with the same true score; each reading is off by up to ``spread / 2``, so
    no two differ by ``spread`` or more, which stays under the 0.05 margin."""
    scaled = [n * spread / 2 for n in noise]
    assert hold_seat_under_noise({"a": base, "b": base, "c": base}, scaled, 0.05, admin="c")


def test_noise_above_the_margin_would_have_moved_an_admin_without_smoothing() -> None:
    """The audit's churn: raw totals 0.06 apart at times, so an unsmoothed margin of 0 (or
    even 0.05) is crossed; this is why the shell announces smoothed scores."""
    noise = [0.03, -0.03, 0.0]
    assert not hold_seat_under_noise({"a": 0.5, "b": 0.5}, noise, 0.0, admin="b")
    assert not hold_seat_under_noise({"a": 0.5, "b": 0.5}, noise, 0.05, admin="b")


def test_smoother_takes_the_first_sample_then_averages_by_time() -> None:
    s = ScoreSmoother(tau=10.0, quantum=0.0)
    assert s.update({"resources": 0.2}, now=0.0) == {"resources": 0.2}
    after = s.update({"resources": 1.0}, now=10.0)  # one time constant later
    assert after["resources"] == pytest.approx(0.2 + 0.8 * (1 - math.exp(-1)))
    # the same time in many small steps lands in the same place
    t = ScoreSmoother(tau=10.0, quantum=0.0)
    t.update({"resources": 0.2}, now=0.0)
    for i in range(1, 101):
        stepped = t.update({"resources": 1.0}, now=i * 0.1)
    assert stepped["resources"] == pytest.approx(after["resources"])


def test_smoother_quantises_and_zero_tau_passes_readings_through() -> None:
    assert quantise(0.123456, 0.01) == 0.12 and quantise(1.2, 0.01) == 1.0
    assert quantise(0.3333, 0.0) == 0.3333
    raw = ScoreSmoother(tau=0.0, quantum=0.0)
    raw.update({"x": 0.1}, 0.0)
    assert raw.update({"x": 0.9}, 1.0) == {"x": 0.9}


@given(seed=st.integers(0, 2**32 - 1), amplitude=st.floats(0.0, 0.3))
@settings(max_examples=25, deadline=None)
def test_smoothed_noisy_readings_never_move_the_admin(seed: int, amplitude: float) -> None:
    """The shell's pipeline without the bus: three replicas on one machine read its CPU at
    different moments (independent noise of up to ``amplitude`` on ``resources``, so raw
    totals differ by up to 0.12, more than the margin), smooth over 20 heartbeats, quantise,
    and announce. Over ten minutes of heartbeats the admin never steps down."""
    rng = random.Random(seed)
    timings = Timings()  # the default profile: 0.3 s heartbeats
    smoothers = {n: ScoreSmoother(tau=20 * timings.heartbeat) for n in ("a", "b", "c")}
    r = ElectionRules(node_id="c", timings=timings)
    r.start(0.0)
    r.became_admin(1, 0.0)
    level = {"uptime": 0.01, "capabilities": 0.4, "resources": 0.6, "network": 0.99}
    for i in range(2000):
        now = i * timings.heartbeat
        for node, smoother in smoothers.items():
            reading = {**level, "experience": 0.0}
            reading["resources"] += rng.uniform(-amplitude, amplitude)
            total = Score(smoother.update(reading, now)).total
            r.on_candidacy(node, total, {}, now)
        assert not [a for a in r.tick(now) if isinstance(a, StepDown)], f"moved at {now:.1f} s"


def test_an_announced_stepdown_starts_an_election_at_once() -> None:
    r = rules("b")
    r.start(0.0)
    r.on_heartbeat("a", 3, 0.1)
    assert r.on_stepdown("c", StepDownReason.CHALLENGE, 0.2) is None  # not our admin
    started = r.on_stepdown("a", StepDownReason.CHALLENGE, 0.2)
    assert started is not None and started.trigger == ADMIN_STEPPED_DOWN
    assert started.reason is StepDownReason.CHALLENGE and started.stepped_down == "a"
    assert r.admin is None and r.state is State.ELECTING
    r.on_candidacy("b", 0.5, {}, 0.2)
    assert r.may_acquire(0.2 + r.delay + 0.001)  # no waiting for a's heartbeats to run out
    # and tick does not call it a heartbeat timeout afterwards
    assert not any(
        isinstance(a, ElectionStarted) and a.trigger is Trigger.ADMIN_HEARTBEAT_TIMEOUT
        for a in r.tick(0.3)
    )


def test_the_admin_that_steps_down_holds_back_and_announces_itself_ineligible() -> None:
    r = rules("a")
    r.start(0.0)
    r.became_admin(1, 0.0)
    started = r.stepped_down(StepDownReason.REQUESTED, 1.0)
    assert started.trigger == ADMIN_STEPPED_DOWN and started.reason is StepDownReason.REQUESTED
    assert not r.may_stand(1.0) and r.may_stand(1.0 + T.failover)
    assert not r.tick(1.1)  # no heartbeat timeout of its own
    manual = rules("a")
    manual.became_admin(1, 0.0)
    manual.stepped_down(StepDownReason.MANUAL, 1.0, hold=False)
    assert manual.may_stand(1.0)


def test_elections_are_rate_limited_by_minimum_interval() -> None:
    slow = Timings(
        heartbeat=0.1,
        failover=5.0,
        lease_ttl=1,
        grace=0.3,
        jitter=0.05,
        min_tenure=0.0,
        min_interval=10.0,
    )
    r = ElectionRules(node_id="b", timings=slow)
    r.start(0.0)
    r.became_admin(1, 0.0)
    r.on_candidacy("b", 0.4, {}, 0.0)
    r.on_candidacy("a", 0.9, {}, 0.0)
    r.on_candidacy("b", 0.4, {}, 1.0)
    r.on_candidacy("a", 0.9, {}, 1.0)
    assert r.tick(1.0) == []  # last election was 1 s ago
    r.on_candidacy("b", 0.4, {}, 5.0)
    r.on_candidacy("a", 0.9, {}, 5.0)
    r.on_candidacy("b", 0.4, {}, 10.0)
    r.on_candidacy("a", 0.9, {}, 10.0)
    assert any(isinstance(a, StepDown) for a in r.tick(10.0))


def test_ineligible_node_never_acquires_and_profiles_exist() -> None:
    r = ElectionRules(node_id="obs", timings=T, eligible_self=False)
    r.start(0.0)
    r.on_candidacy("obs", 1.0, {}, 0.0)
    r.tick(0.4)
    assert not r.may_acquire(1.0)
    compat = Timings.profile("chorus-compat")
    assert compat.heartbeat == 5.0 and compat.failover == 15.0
    with pytest.raises(ValueError):
        Timings.profile("fast-and-loose")


def test_next_deadline_is_when_the_rules_can_decide_something() -> None:
    r = rules("b")
    r.start(now=0.0)
    assert r.next_deadline(0.0) == pytest.approx(T.grace)  # discovery ends
    r.on_heartbeat("a", 1, now=1.0)
    assert r.next_deadline(1.0) == pytest.approx(1.0 + T.failover)  # the admin times out
    started = r.tick(1.0 + T.failover)
    assert any(isinstance(a, ElectionStarted) for a in started)
    due = r.next_deadline(1.0 + T.failover)
    assert due is not None and due == pytest.approx(1.0 + T.failover + r.delay)  # act then
    assert r.next_deadline(due + 0.01) is None  # nothing more to wait for
