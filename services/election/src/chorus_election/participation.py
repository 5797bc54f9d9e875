"""This replica's participant in the election, observed by the election metrics.

Each replica signs its election messages with its own key (svc-election-<node>,
chorus_common.service_signing) and takes only those of registered election replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from chorus_common.bus import Bus
from chorus_common.election import Participant, ParticipantHooks, ScoreSource, StepDownReason
from chorus_common.service_signing import ServiceSigner, ServiceVerifier
from chorus_election.metrics import ElectionMetrics
from chorus_election.settings import ElectionSettings, pairs

__all__ = ["open_participant", "participant_hooks"]


def participant_hooks(m: ElectionMetrics, actions_log: Path | None) -> ParticipantHooks:
    """What the participant reports: the election metrics, and each admin action's
    ``term acted_at`` appended to ``actions_log`` (when set)."""

    def admin_action(term: int, acted_at: float) -> None:
        m.admin_actions.inc()
        if actions_log is not None:
            with actions_log.open("a") as handle:
                handle.write(f"{term} {acted_at:.6f}\n")

    def tick(p: Participant) -> None:
        now = time.monotonic()
        m.is_admin.set(1 if p.is_admin else 0)
        m.term.set(p.rules.admin_term)
        m.candidates.set(len(p.rules.live_candidates(now)))
        lead = 0.0
        mine = p.rules.candidates.get(p.node_id)
        others = [c for c in p.rules.live_candidates(now) if c.node_id != p.node_id]
        if p.is_admin and mine is not None and others:
            lead = max(c.total for c in others) - mine.total
        m.challenger_lead.set(lead)
        if p.rules.admin:
            m.heartbeat_lag.set(0 if p.is_admin else time.monotonic() - p.rules.admin_seen_at)
        for name, value in p.last_score.components.items():
            m.score.labels(name).set(value)
        m.score.labels("total").set(p.last_score.total)

    def elected(term: int, duration: float) -> None:
        m.won.inc()
        m.duration.observe(duration)

    return ParticipantHooks(
        on_election=lambda trigger: m.elections.labels(trigger).inc(),
        on_elected=elected,
        on_admin_change=lambda cause: m.admin_changes.labels(cause).inc(),
        on_stepdown=lambda reason: m.stepdowns.labels(reason.value).inc(),
        on_split_brain=m.split_brain.inc,
        on_admin_action=admin_action,
        on_tick=tick,
    )


async def open_participant(
    bus: Bus,
    s: ElectionSettings,
    m: ElectionMetrics,
    *,
    service: str,
    licensed: Callable[[], bool],
    gated: bool,
) -> Participant:
    """This replica's participant (not started), signing as ``service`` on ``s.node_id``.

    ``licensed`` says whether the replica holds a seat now: one without a seat neither
    stands nor acts, and steps down as ``license_unavailable`` when ``gated`` (else
    ``ineligible``).
    """
    score = ScoreSource(
        capabilities=[c for c in s.election_capabilities.split(",") if c],
        weights=s.weights(),
        smoothing=s.smoothing_seconds(),
        quantum=s.election_score_quantum,
        overrides=pairs(s.election_score_override),
    )
    m.challenge_margin.set(s.election_challenge_margin)

    def eligible() -> bool:
        # a replica without a seat neither stands nor acts (Service.licensed)
        return s.election_eligible and licensed()

    return Participant(
        bus,
        s.node_id,
        s.timings(),
        score,
        eligible=eligible,
        ineligible_reason=StepDownReason.LICENSE_UNAVAILABLE
        if gated
        else StepDownReason.INELIGIBLE,
        challenge_margin=s.election_challenge_margin,
        hooks=participant_hooks(m, s.election_actions_log),
        signer=await ServiceSigner.open(bus, service, s.node_id, s.data_dir),
        verifier=await ServiceVerifier.open(bus),
    )
