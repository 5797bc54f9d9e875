"""The election service's metric family: category ``election``."""

from __future__ import annotations

from chorus_common.election import ADMIN_STEPPED_DOWN, COMPONENTS, StepDownReason, Trigger
from chorus_common.metrics import MetricSet, counter, gauge, histogram

__all__ = ["DURATION_BUCKETS", "ElectionMetrics"]

#: an election takes from tens of milliseconds (a handover) to tens of seconds (a failover)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0)


class ElectionMetrics(MetricSet):
    elections = counter(
        "chorus_election_elections_total",
        "Elections seen by this participant, by trigger (the five triggers, or "
        "admin_stepped_down when the admin announced a step-down)",
        ["trigger"],
        known=[(str(trigger),) for trigger in (*Trigger, ADMIN_STEPPED_DOWN)],
    )
    won = counter("chorus_election_won_total", "Terms this participant won")
    duration = histogram(
        "chorus_election_duration_seconds",
        "From trigger to an admin with a new term",
        buckets=DURATION_BUCKETS,
    )
    term = gauge("chorus_election_term", "Current admin term as seen here")
    is_admin = gauge("chorus_election_is_admin", "1 while this participant holds the admin lease")
    heartbeat_lag = gauge(
        "chorus_election_heartbeat_lag_seconds", "Time since the admin was last heard"
    )
    score = gauge(
        "chorus_election_score",
        "This participant's score components and total",
        ["component"],
        known=[(name,) for name in (*COMPONENTS, "total")],
    )
    stepdowns = counter(
        "chorus_election_stepdowns_total",
        "Times this participant gave up the admin seat, by reason (challenge, superseded, "
        "requested, manual, license_unavailable, ineligible, lease_lost, shutdown)",
        ["reason"],
        known=[(reason.value,) for reason in StepDownReason],
    )
    admin_changes = counter(
        "chorus_election_admin_changes_total",
        "Terms this participant won, by cause: the step-down reason when the previous "
        "admin announced one, else the election trigger (summed over replicas: every "
        "admin change in the cluster)",
        ["cause"],
        known=[(cause.value,) for cause in (*Trigger, *StepDownReason)],
    )
    challenger_lead = gauge(
        "chorus_election_challenger_lead",
        "On the admin: the best other candidate's smoothed total minus its own "
        "(a challenge needs more than the margin); 0 elsewhere",
    )
    challenge_margin = gauge(
        "chorus_election_challenge_margin",
        "How much higher a challenger's smoothed total must be to unseat the admin",
    )
    split_brain = counter(
        "chorus_election_split_brain_detections_total",
        "Two admins heard within a failover window",
    )
    candidates = gauge("chorus_election_live_candidates", "Eligible candidates heard recently")
    admin_actions = counter(
        "chorus_election_admin_actions_total", "Admin actions taken under a valid term"
    )
