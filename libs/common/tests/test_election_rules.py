"""The election rules without a network: triggers, winners, stability windows."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.election import ElectionRules, Score, State, Timings, Trigger
from chorus_common.election.rules import ElectionStarted, StepDown, ranking_key

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


def test_higher_score_does_not_challenge_before_minimum_tenure() -> None:
    r = rules("b")
    r.start(0.0)
    r.became_admin(1, 0.0)
    r.on_candidacy("b", 0.4, {}, 0.0)
    r.on_candidacy("a", 0.9, {}, 0.0)
    assert r.tick(0.2) == []  # within minimum tenure
    r.on_candidacy("b", 0.4, {}, 2.05)
    r.on_candidacy("a", 0.9, {}, 2.05)
    actions = r.tick(2.1)
    assert any(isinstance(a, StepDown) for a in actions)


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
    r.on_candidacy("b", 0.4, {}, 1.0)
    r.on_candidacy("a", 0.9, {}, 1.0)
    assert r.tick(1.0) == []  # last election was 1 s ago
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
