"""The election service's metric family: category ``election``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chorus_common.election import ADMIN_STEPPED_DOWN, COMPONENTS, StepDownReason, Trigger


class ElectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.elections = Counter(
            "chorus_election_elections_total",
            "Elections seen by this participant, by trigger (the five triggers, or "
            "admin_stepped_down when the admin announced a step-down)",
            ["trigger"],
            registry=registry,
        )
        self.won = Counter(
            "chorus_election_won_total",
            "Terms this participant won",
            registry=registry,
        )
        self.duration = Histogram(
            "chorus_election_duration_seconds",
            "From trigger to an admin with a new term",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0),
            registry=registry,
        )
        self.term = Gauge(
            "chorus_election_term", "Current admin term as seen here", registry=registry
        )
        self.is_admin = Gauge(
            "chorus_election_is_admin",
            "1 while this participant holds the admin lease",
            registry=registry,
        )
        self.heartbeat_lag = Gauge(
            "chorus_election_heartbeat_lag_seconds",
            "Time since the admin was last heard",
            registry=registry,
        )
        self.score = Gauge(
            "chorus_election_score",
            "This participant's score components and total",
            ["component"],
            registry=registry,
        )
        self.stepdowns = Counter(
            "chorus_election_stepdowns_total",
            "Times this participant gave up the admin seat, by reason (challenge, superseded, "
            "requested, manual, license_unavailable, ineligible, lease_lost, shutdown)",
            ["reason"],
            registry=registry,
        )
        self.admin_changes = Counter(
            "chorus_election_admin_changes_total",
            "Terms this participant won, by cause: the step-down reason when the previous "
            "admin announced one, else the election trigger (summed over replicas: every "
            "admin change in the cluster)",
            ["cause"],
            registry=registry,
        )
        self.challenger_lead = Gauge(
            "chorus_election_challenger_lead",
            "On the admin: the best other candidate's smoothed total minus its own "
            "(a challenge needs more than the margin); 0 elsewhere",
            registry=registry,
        )
        self.challenge_margin = Gauge(
            "chorus_election_challenge_margin",
            "How much higher a challenger's smoothed total must be to unseat the admin",
            registry=registry,
        )
        self.split_brain = Counter(
            "chorus_election_split_brain_detections_total",
            "Two admins heard within a failover window",
            registry=registry,
        )
        self.candidates = Gauge(
            "chorus_election_live_candidates",
            "Eligible candidates heard recently",
            registry=registry,
        )
        self.admin_actions = Counter(
            "chorus_election_admin_actions_total",
            "Admin actions taken under a valid term",
            registry=registry,
        )
        for trigger in (*Trigger, ADMIN_STEPPED_DOWN):
            self.elections.labels(str(trigger))
        for reason in StepDownReason:
            self.stepdowns.labels(reason.value)
        for cause in (*Trigger, *StepDownReason):
            self.admin_changes.labels(cause.value)
        for name in (*COMPONENTS, "total"):
            self.score.labels(name)
