"""The restart decisions of `chorus up`, without processes: back-off, reset, giving up."""

from __future__ import annotations

from chorus_cli.supervision import Action, InstanceRecord, Phase, RestartPolicy, describe_exit


def crash(record: InstanceRecord, now: float, how: str = "exit 1") -> float:
    """Exit at ``now``; returns when the record says to restart."""
    record.exited(now, how)
    assert record.restart_at is not None
    return record.restart_at


def test_exits_are_named_as_a_person_says_them() -> None:
    assert describe_exit(-9) == "SIGKILL"
    assert describe_exit(-15) == "SIGTERM"
    assert describe_exit(1) == "exit 1"
    assert describe_exit(0) == "exit 0"


def test_back_off_doubles_from_half_a_second_up_to_thirty() -> None:
    record = InstanceRecord("dht-1", RestartPolicy(max_crashes=100, max_unready_starts=100))
    record.started(0.0)
    now, delays = 0.0, []
    for _ in range(9):
        now += 100.0  # far apart: never a crash loop
        record.ready(now)
        due = crash(record, now)
        delays.append(due - now)
        assert record.next_action(due - 0.01) is Action.NONE
        assert record.next_action(due) is Action.RESTART
        record.restarted(due)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert record.restarts == 9 and record.last_exit == "exit 1"


def test_staying_ready_a_while_resets_the_back_off() -> None:
    record = InstanceRecord("election", RestartPolicy())
    record.started(0.0)
    record.ready(1.0)
    record.restarted(crash(record, 2.0))
    record.ready(3.0)
    record.restarted(crash(record, 4.0))  # next delay would be 2 s
    record.ready(5.0)
    assert record.next_action(5.0 + 29.0) is Action.NONE
    assert record.delay == 2.0
    record.next_action(5.0 + 30.0)  # ready for stable_after
    assert record.delay == 0.5
    assert crash(record, 100.0) == 100.5


def test_five_exits_within_a_minute_fail_it_and_it_stays_down() -> None:
    record = InstanceRecord("backbeat", RestartPolicy())
    record.started(0.0)
    now = 0.0
    for _ in range(4):
        record.ready(now + 0.1)  # even runs that got ready count towards a crash loop
        due = crash(record, now + 1.0, "SIGKILL")
        record.restarted(due)
        now = due
    record.exited(now + 1.0, "SIGKILL")
    assert record.phase is Phase.FAILED
    assert record.failure == "5 exits within 60s (last: SIGKILL)"
    assert record.next_action(now + 1000.0) is Action.NONE
    assert record.restarts == 4


def test_exits_spread_wider_than_the_window_never_fail_it() -> None:
    record = InstanceRecord("hap", RestartPolicy())
    record.started(0.0)
    for i in range(20):
        record.ready(i * 20.0 + 1.0)
        record.restarted(crash(record, i * 20.0 + 2.0))
    assert record.phase is Phase.STARTING and record.restarts == 20


def test_a_start_that_never_gets_ready_is_killed_and_five_such_fail_it() -> None:
    policy = RestartPolicy(ready_timeout=10.0, crash_window=1.0)  # only the unready rule
    record = InstanceRecord("dht-3", policy)
    record.started(0.0)
    now = 0.0
    for attempt in range(5):
        assert record.next_action(now + 9.9) is Action.NONE
        assert record.next_action(now + 10.0) is Action.KILL
        record.exited(now + 10.0, "not ready in 10s")
        if attempt < 4:
            now = record.restart_at or 0.0
            record.restarted(now)
    assert record.phase is Phase.FAILED
    assert record.failure == "never ready in 5 starts (last: not ready in 10s)"


def test_a_ready_service_that_turns_unready_is_shown_not_restarted() -> None:
    record = InstanceRecord("coordinator", RestartPolicy(ready_timeout=5.0))
    record.started(0.0)
    record.ready(1.0)
    record.unready(2.0)
    assert record.phase is Phase.NOT_READY
    assert record.next_action(100.0) is Action.NONE
    record.ready(101.0)
    assert record.phase is Phase.READY


def test_nothing_restarts_once_stopping() -> None:
    record = InstanceRecord("licensing", RestartPolicy())
    record.started(0.0)
    record.exited(1.0, "exit 1")
    record.stopped()
    assert record.next_action(10.0) is Action.NONE
    record.exited(11.0, "SIGTERM")
    assert record.phase is Phase.STOPPED and record.restarts == 0
