"""The coordinator's metric families: the ``tasks`` and ``coordination`` categories."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from chorus_common.metrics import MetricSet, counter, gauge, histogram

__all__ = ["TASK_STATUSES", "CoordinatorMetrics"]

#: the statuses a task on the board can have (``chorus_tasks_by_status``)
TASK_STATUSES = ("open", "claimed", "completed")


class CoordinatorMetrics(MetricSet):
    """Board, assignment and meta-coordination.

    ``rule_matches`` is labelled by rule name: the rules in force (built-in and
    configured, a fixed set) are pre-created from ``rules``.
    """

    tasks = gauge(
        "chorus_tasks_by_status",
        "Tasks on the board by status",
        ["status"],
        known=[(status,) for status in TASK_STATUSES],
    )
    conflicts = counter("chorus_tasks_claim_conflicts_total", "Claims refused because another won")
    assigned = counter("chorus_tasks_assigned_total", "Tasks allocated by the leader")
    assign_latency = histogram(
        "chorus_tasks_assignment_latency_seconds", "From announcement to allocation"
    )
    expired = counter("chorus_tasks_lease_expiries_total", "Claims returned to open")
    sessions = counter(
        "chorus_coordination_sessions_total",
        "Sessions by outcome",
        ["outcome"],
        known=[("resolved",), ("escalated",)],
    )
    escalations = counter("chorus_coordination_escalations_total", "Escalations to humans")
    webhook = counter(
        "chorus_coordination_webhook_posts_total",
        "Escalations POSTed to the configured webhook, by outcome",
        ["outcome"],
        known=[("delivered",), ("failed",)],
    )
    rule_matches = counter(
        "chorus_coordination_rule_matches_total", "Dependency rule matches", ["rule"]
    )
    leader = gauge("chorus_coordination_is_leader", "1 while this replica assigns work")

    def __init__(self, registry: CollectorRegistry, rules: Iterable[str] = ()) -> None:
        super().__init__(registry)
        for rule in rules:
            self.rule_matches.labels(rule)
