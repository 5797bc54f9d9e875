"""Dependency rules and session rules, without a network."""

import pytest

from chorus_coordinator.rules import BUILTIN_RULES, TaskView, detect, parse_custom_rules
from chorus_coordinator.sessions import Message, Session

PAIRS = {
    "API_Contract": ("Define the billing API endpoint", "Implement the billing API client"),
    "Database_Schema": ("Add orders table migration", "Read orders from the new schema"),
    "Configuration_Dependency": ("Move timeouts to config", "Read environment overrides"),
    "Security_Compliance": ("Rotate the auth token", "Check permission on upload"),
}
REASONS = {
    "API_Contract": "API definition and implementation dependency",
    "Database_Schema": "Database schema dependency detected",
    "Configuration_Dependency": "Configuration dependency - coordinated changes needed",
    "Security_Compliance": "Security implementation requires coordination",
}


@pytest.mark.parametrize("rule", list(PAIRS))
def test_each_rule_fires_across_repositories_and_not_within_one(rule: str) -> None:
    a_title, b_title = PAIRS[rule]
    a = TaskView("p:a", "repo-one", a_title)
    b_other = TaskView("p:b", "repo-two", b_title)
    b_same = TaskView("p:c", "repo-one", b_title)
    found = detect(a, [b_other, b_same])
    assert [d.rule for d in found] == [rule]
    assert found[0].reason == REASONS[rule] and found[0].confidence == 0.8
    assert found[0].task_b == "p:b"
    assert detect(a, [a]) == []


def test_custom_rules() -> None:
    rules = BUILTIN_RULES + parse_custom_rules(
        "Proto_Buf:protobuf|grpc:Shared protobuf definitions"
    )
    found = detect(
        TaskView("p:x", "r1", "bump grpc"), [TaskView("p:y", "r2", "new protobuf field")], rules
    )
    assert [d.rule for d in found] == ["Proto_Buf"]
    with pytest.raises(ValueError):
        parse_custom_rules("no-keywords")


def test_session_resolves_when_participants_agree() -> None:
    s = Session("s1", "dependency", ["a", "b"], started_at=0)
    assert s.add(Message("a", "proposal", "ship API first", 1)) == "continue"
    assert s.add(Message("b", "agreement", "fine", 2)) == "resolved"


def test_session_escalates_on_keywords_rounds_and_time() -> None:
    s = Session("s2", "dependency", ["a", "b"], started_at=0)
    assert s.add(Message("a", "concern", "we are stuck on the schema", 1)) == "escalated"
    t = Session("s3", "dependency", ["a", "b"], started_at=0, max_messages=4)
    for i in range(3):
        assert t.add(Message("a" if i % 2 else "b", "concern", "no", i)) == "continue"
    assert t.add(Message("a", "concern", "no", 4)) == "escalated"
    u = Session("s4", "dependency", ["a"], started_at=0, max_seconds=60)
    assert u.tick(30) == "continue" and u.tick(61) == "escalated"
    assert u.sweepable(62)
