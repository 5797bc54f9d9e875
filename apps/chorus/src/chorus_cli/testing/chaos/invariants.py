"""What must hold after any mix of kills, pauses and restarts, as pure checks over records.

Each check takes what the workload observed (acknowledgements, claims, admin
answers) and what the system holds afterwards, and returns the violations as
sentences; an empty list means the invariant held. Kept free of I/O so the
checks themselves are tested against hand-made histories that break them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AdminAnswer",
    "Disruption",
    "admin_changes_follow_faults",
    "completed_by_one_agent",
    "envelopes_once",
    "no_overlapping_admin_terms",
    "records_readable",
    "single_holder_per_term",
]


def envelopes_once(
    acked: Iterable[str], attempted: Iterable[str], stored: Iterable[str]
) -> list[str]:
    """Every acknowledged envelope is stored exactly once; nothing attempted is stored twice."""
    counts = Counter(stored)
    out = [f"acknowledged envelope {i} stored {counts[i]} times" for i in acked if counts[i] != 1]
    out += [f"envelope {i} stored {counts[i]} times" for i in attempted if counts[i] > 1]
    return out


RELEASES = frozenset({"lease_expired", "failed"})


def single_holder_per_term(tasks: Iterable[Mapping[str, Any]]) -> list[str]:
    """No task ever had two holders at once, so none under one term; none completed twice.

    The board logs every claim and allocation (with the coordinator leader's
    term), every lapsed claim and every failure in the task's history, in
    compare-and-set order. A new holder is only valid after the previous one
    was released; a leader may well re-allocate a task in the same term once
    the first holder's claim has lapsed.
    """
    out: list[str] = []
    for task in tasks:
        holder: str | None = None
        completions = 0
        for event in task.get("history", []):
            kind, agent = event.get("event"), event.get("agent")
            if kind in ("claimed", "allocated"):
                if holder is not None and holder != agent:
                    out.append(
                        f"task {task['id']} given to {agent} (term {event.get('term')}) "
                        f"while {holder} still held it"
                    )
                holder = agent
            elif kind in RELEASES:
                holder = None
            elif kind == "completed":
                completions += 1
        if completions > 1:
            out.append(f"task {task['id']} completed {completions} times")
    return out


def completed_by_one_agent(completions: Iterable[tuple[str, str]]) -> list[str]:
    """From the agents' side: no two agents were both told they completed the same task."""
    by_task: dict[str, set[str]] = defaultdict(set)
    for task_id, agent in completions:
        by_task[task_id].add(agent)
    return [
        f"task {task_id} completed by {sorted(agents)}"
        for task_id, agents in by_task.items()
        if len(agents) > 1
    ]


@dataclass(frozen=True)
class AdminAnswer:
    """One election replica saying it is the admin, with when the question was asked and answered."""

    node: str
    term: int
    asked: float
    answered: float


def no_overlapping_admin_terms(answers: Iterable[AdminAnswer]) -> list[str]:
    """One admin per term, and no admin of an older term acting after a newer one acted.

    An answer is only known to hold somewhere between the question and the
    answer, so an overlap is reported only when the newer admin's answer came
    back before the older admin was even asked.
    """
    answers = sorted(answers, key=lambda a: a.asked)
    out: list[str] = []
    by_term: dict[int, set[str]] = defaultdict(set)
    for a in answers:
        by_term[a.term].add(a.node)
    out += [
        f"term {t} claimed by {sorted(nodes)}" for t, nodes in by_term.items() if len(nodes) > 1
    ]
    newest: AdminAnswer | None = None  # highest term confirmed so far, by answer time
    for a in sorted(answers, key=lambda a: a.answered):
        if newest is not None and a.term < newest.term and a.asked > newest.answered:
            out.append(
                f"{a.node} acted as admin of term {a.term} after {newest.node} "
                f"already acted as admin of term {newest.term}"
            )
        if newest is None or a.term > newest.term:
            newest = a
    return out


@dataclass(frozen=True)
class Disruption:
    """A fault as the admin invariant sees it: whom it hit, from when to when (monotonic)."""

    target: str
    start: float
    end: float


def admin_changes_follow_faults(
    answers: Iterable[AdminAnswer],
    disruptions: Iterable[Disruption],
    always_disruptive: Iterable[str] = (),
    grace: float = 10.0,
) -> list[str]:
    """The admin changes only when a fault hit it (or a target in ``always_disruptive``,
    such as a NATS node), never because of noise in the scores.

    A new term is explained by a disruption of the previous admin's node, or of an
    always-disruptive target, that began before the new admin was first seen and ended
    at most ``grace`` seconds before (a restarted node takes a while to rejoin).
    """
    faults = list(disruptions)
    shared = set(always_disruptive)
    out: list[str] = []
    previous: AdminAnswer | None = None
    for a in sorted(answers, key=lambda a: a.asked):
        if previous is not None and a.term > previous.term:
            hit = {previous.node, *shared}
            if not any(
                f.target in hit and f.start <= a.answered and a.asked <= f.end + grace
                for f in faults
            ):
                out.append(
                    f"admin changed from {previous.node} (term {previous.term}) to {a.node} "
                    f"(term {a.term}) with no fault on {previous.node} or the bus"
                )
        if previous is None or a.term > previous.term:
            previous = a
    return out


def records_readable(written: Mapping[str, Any], read: Mapping[str, Any]) -> list[str]:
    """Every acknowledged DHT write reads back with the value written."""
    out: list[str] = []
    for address, value in written.items():
        if address not in read:
            out.append(f"record {address} not readable")
        elif read[address] != value:
            out.append(f"record {address} reads {read[address]!r}, written {value!r}")
    return out
