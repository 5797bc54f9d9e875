"""The election service: every replica is a participant; REST shows and steers the election.

Each replica signs its election messages with its own key (svc-election-<node>,
chorus_common.service_signing) and takes only those of registered election replicas.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from pydantic import Field, field_validator

from chorus_common.config import ChorusSettings
from chorus_common.election import (
    COMPONENTS,
    DEFAULT_CHALLENGE_MARGIN,
    DEFAULT_SCORE_QUANTUM,
    DEFAULT_WEIGHTS,
    SMOOTHING_HEARTBEATS,
    Participant,
    ParticipantHooks,
    ScoreSource,
    StepDownReason,
    Timings,
)
from chorus_common.errors import ConflictError
from chorus_common.service import Service, problem_responses
from chorus_common.service_signing import ServiceSigner, ServiceVerifier
from chorus_common.topology import BUCKET_REGISTRY
from chorus_election.metrics import ElectionMetrics


class ElectionSettings(ChorusSettings):
    election_profile: str = "default"
    #: JSON or k=v list overriding single timings of the profile, e.g. "heartbeat=0.2,lease_ttl=0.8"
    election_timings: str = ""
    election_weights: str = ""
    election_capabilities: str = ""
    #: pin score components ("uptime=1,network=0.5"): for operators who want a preferred admin
    election_score_override: str = ""
    election_eligible: bool = True
    #: a sitting admin is challenged only by a smoothed total higher than its own by more
    #: than this (totals are in [0, 1]); electing with no admin alive uses no margin
    election_challenge_margin: float = Field(DEFAULT_CHALLENGE_MARGIN, ge=0.0, le=1.0)
    #: time constant of the moving average of score components, in seconds
    #: (unset: SMOOTHING_HEARTBEATS heartbeats of the profile; 0 announces raw readings)
    election_score_smoothing_seconds: float | None = Field(None, ge=0.0)
    #: announced components are rounded to multiples of this (0: not rounded)
    election_score_quantum: float = Field(DEFAULT_SCORE_QUANTUM, ge=0.0, le=0.25)
    #: append "term acted_at" per admin action to this file (fault tests audit it)
    election_actions_log: Path | None = None

    @field_validator("election_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        Timings.profile(value)
        return value

    @field_validator("election_timings", "election_weights", "election_score_override")
    @classmethod
    def _pairs_parse(cls, value: str) -> str:
        try:
            _pairs(value)
        except ValueError:
            raise ValueError(
                f"expected name=number pairs separated by commas, got {value!r}"
            ) from None
        return value

    def timings(self) -> Timings:
        base = Timings.profile(self.election_profile)
        overrides = _pairs(self.election_timings)
        return Timings(**{**base.__dict__, **overrides}) if overrides else base

    def weights(self) -> dict[str, float]:
        given = _pairs(self.election_weights)
        unknown = set(given) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown score components {sorted(unknown)}; use {list(COMPONENTS)}")
        return {**DEFAULT_WEIGHTS, **given}

    def smoothing_seconds(self) -> float:
        if self.election_score_smoothing_seconds is not None:
            return self.election_score_smoothing_seconds
        return SMOOTHING_HEARTBEATS * self.timings().heartbeat


def _pairs(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        out[key.strip()] = float(value)
    return out


class ElectionService(Service):
    name = "election"
    description = "Democratic admin election with fencing terms"
    settings_class = ElectionSettings
    settings: ElectionSettings

    def __init__(self, settings: ElectionSettings | None = None) -> None:
        super().__init__(settings)
        self.election_metrics = ElectionMetrics(self.metrics.registry)
        self.participant: Participant | None = None

    async def setup(self) -> None:
        s = self.settings
        m = self.election_metrics
        log_path = s.election_actions_log

        def admin_action(term: int, acted_at: float) -> None:
            m.admin_actions.inc()
            if log_path is not None:
                with log_path.open("a") as handle:
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

        hooks = ParticipantHooks(
            on_election=lambda trigger: m.elections.labels(trigger).inc(),
            on_elected=elected,
            on_admin_change=lambda cause: m.admin_changes.labels(cause).inc(),
            on_stepdown=lambda reason: m.stepdowns.labels(reason.value).inc(),
            on_split_brain=m.split_brain.inc,
            on_admin_action=admin_action,
            on_tick=tick,
        )
        score = ScoreSource(
            capabilities=[c for c in s.election_capabilities.split(",") if c],
            weights=s.weights(),
            smoothing=s.smoothing_seconds(),
            quantum=s.election_score_quantum,
            overrides=_pairs(s.election_score_override),
        )
        m.challenge_margin.set(s.election_challenge_margin)

        def eligible() -> bool:
            # a replica without a seat neither stands nor acts (Service.licensed)
            return s.election_eligible and self.licensed

        self.participant = Participant(
            self.bus,
            s.node_id,
            s.timings(),
            score,
            eligible=eligible,
            ineligible_reason=StepDownReason.LICENSE_UNAVAILABLE
            if self.gated
            else StepDownReason.INELIGIBLE,
            challenge_margin=s.election_challenge_margin,
            hooks=hooks,
            signer=await ServiceSigner.open(
                await self.bus.js.key_value(BUCKET_REGISTRY), self.name, s.node_id, s.data_dir
            ),
            verifier=await ServiceVerifier.open(self.bus),
        )
        await self.participant.start()

    async def teardown(self) -> None:
        if self.participant is not None:
            await self.participant.stop()

    def routes(self, app: FastAPI) -> None:
        admin = self.require_admin()

        def participant() -> Participant:
            if self.participant is None:
                from chorus_common.errors import UnavailableError

                raise UnavailableError("the election participant is still starting")
            return self.participant

        starting = problem_responses(503)

        @app.get("/v1/admin", tags=["election"], responses=starting)
        async def current_admin() -> dict[str, Any]:
            """The admin as this replica sees it: id, term, tenure and score breakdown."""
            return participant().admin_view()

        @app.get("/v1/candidates", tags=["election"], responses=starting)
        async def candidates() -> dict[str, Any]:
            return {"candidates": participant().candidates_view()}

        @app.get("/v1/elections", tags=["election"], responses=starting)
        async def elections() -> dict[str, Any]:
            """Recent elections: trigger, candidates, winner, term and duration."""
            return {"elections": [r.as_dict() for r in reversed(participant().history)]}

        @app.post(
            "/v1/elections",
            dependencies=[Depends(admin)],
            status_code=202,
            tags=["election"],
            responses=starting,
        )
        async def manual() -> dict[str, Any]:
            """Start an election now (trigger ``manual_trigger``); the best candidate wins."""
            await participant().trigger_manual()
            return {"started": True, "trigger": "manual_trigger"}

        @app.post(
            "/v1/stepdown",
            dependencies=[Depends(admin)],
            tags=["election"],
            responses=problem_responses(409, 503),
        )
        async def stepdown() -> dict[str, Any]:
            """Make this replica give up the admin lease (if it holds it)."""
            p = participant()
            if not p.is_admin:
                raise ConflictError(
                    f"{self.settings.node_id} is not the admin (the admin is {p.rules.admin}); "
                    f"send this to the admin's replica"
                )
            term = p.term
            await p.step_down(StepDownReason.REQUESTED)
            return {"stepped_down": True, "term": term}

    def health_document(self) -> dict[str, Any]:
        doc = super().health_document()
        if self.participant is not None:
            doc["election"] = {
                "admin": self.participant.rules.admin,
                "is_admin": self.participant.is_admin,
            }
        return doc
