"""The chaos invariants catch the histories they exist for (a check that cannot fail proves nothing)."""

from chorus_cli.testing.chaos import invariants as inv
from chorus_cli.testing.chaos.invariants import AdminAnswer


def test_envelopes_lost_or_duplicated_are_reported() -> None:
    assert inv.envelopes_once(["a", "b"], ["a", "b", "c"], ["a", "b", "c"]) == []
    lost = inv.envelopes_once(["a", "b"], ["a", "b"], ["a"])
    assert lost == ["acknowledged envelope b stored 0 times"]
    twice = inv.envelopes_once(["a"], ["a", "c"], ["a", "c", "c"])
    assert twice == ["envelope c stored 2 times"]


def test_two_holders_at_once_and_double_completion_are_reported() -> None:
    fine = {
        "id": "t1",
        "history": [
            {"event": "allocated", "agent": "a1", "term": 3},
            {"event": "lease_expired", "agent": "a1"},
            {"event": "allocated", "agent": "a2", "term": 3},  # same term, after a release
            {"event": "failed", "agent": "a2"},
            {"event": "claimed", "agent": "a3", "term": None},
            {"event": "claimed", "agent": "a3", "term": None},  # a renewal by the holder
            {"event": "completed", "agent": "a3"},
        ],
    }
    assert inv.single_holder_per_term([fine]) == []
    split = {
        "id": "t2",
        "history": [
            {"event": "allocated", "agent": "a1", "term": 3},
            {"event": "allocated", "agent": "a2", "term": 3},
            {"event": "completed", "agent": "a1"},
            {"event": "completed", "agent": "a2"},
        ],
    }
    assert inv.single_holder_per_term([split]) == [
        "task t2 given to a2 (term 3) while a1 still held it",
        "task t2 completed 2 times",
    ]
    assert inv.completed_by_one_agent([("t1", "a1"), ("t1", "a1")]) == []
    assert inv.completed_by_one_agent([("t1", "a1"), ("t1", "a2")]) == [
        "task t1 completed by ['a1', 'a2']"
    ]


def test_an_old_admin_acting_after_a_new_one_is_reported() -> None:
    handover = [
        AdminAnswer("e1", 1, asked=0.0, answered=0.1),
        AdminAnswer("e2", 2, asked=2.0, answered=2.1),
    ]
    assert inv.no_overlapping_admin_terms(handover) == []
    # e1's answer may have been computed before e2 took over: not provably an overlap
    racing = [*handover, AdminAnswer("e1", 1, asked=2.05, answered=2.3)]
    assert inv.no_overlapping_admin_terms(racing) == []
    stale = [*handover, AdminAnswer("e1", 1, asked=2.5, answered=2.6)]
    assert inv.no_overlapping_admin_terms(stale) == [
        "e1 acted as admin of term 1 after e2 already acted as admin of term 2"
    ]
    same_term = [AdminAnswer("e1", 5, 0.0, 0.1), AdminAnswer("e3", 5, 1.0, 1.1)]
    assert inv.no_overlapping_admin_terms(same_term) == ["term 5 claimed by ['e1', 'e3']"]


def test_unreadable_or_changed_records_are_reported() -> None:
    written = {"ucxl://a": {"n": 1}, "ucxl://b": {"n": 2}}
    assert inv.records_readable(written, dict(written)) == []
    assert inv.records_readable(written, {"ucxl://a": {"n": 9}}) == [
        "record ucxl://a reads {'n': 9}, written {'n': 1}",
        "record ucxl://b not readable",
    ]


def test_an_admin_change_without_a_fault_on_the_admin_or_the_bus_is_reported() -> None:
    answers = [
        AdminAnswer("e1", 1, 0.0, 0.1),
        AdminAnswer("e1", 1, 5.0, 5.1),
        AdminAnswer("e2", 2, 6.0, 6.1),  # e1 was killed at 5.5: explained
        AdminAnswer("e3", 3, 40.0, 40.1),  # only e1 (not the admin) paused: noise
        AdminAnswer("e1", 4, 60.0, 60.1),  # a NATS node went down at 59
    ]
    faults = [
        inv.Disruption("e1", 5.5, 6.5),
        inv.Disruption("e1", 38.0, 39.0),
        inv.Disruption("n0", 59.0, 60.0),
    ]
    assert inv.admin_changes_follow_faults(answers, faults, always_disruptive={"n0"}) == [
        "admin changed from e2 (term 2) to e3 (term 3) with no fault on e2 or the bus"
    ]
    assert inv.admin_changes_follow_faults(answers[:3], faults) == []
