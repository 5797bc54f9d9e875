"""The election service's settings: ``CHORUS_ELECTION_*`` on top of the shared ones."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from chorus_common.config import ChorusSettings
from chorus_common.election import (
    COMPONENTS,
    DEFAULT_CHALLENGE_MARGIN,
    DEFAULT_SCORE_QUANTUM,
    DEFAULT_WEIGHTS,
    SMOOTHING_HEARTBEATS,
    Timings,
)

__all__ = ["ElectionSettings", "pairs"]


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
            pairs(value)
        except ValueError:
            raise ValueError(
                f"expected name=number pairs separated by commas, got {value!r}"
            ) from None
        return value

    def timings(self) -> Timings:
        base = Timings.profile(self.election_profile)
        overrides = pairs(self.election_timings)
        return Timings(**{**base.__dict__, **overrides}) if overrides else base

    def weights(self) -> dict[str, float]:
        given = pairs(self.election_weights)
        unknown = set(given) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown score components {sorted(unknown)}; use {list(COMPONENTS)}")
        return {**DEFAULT_WEIGHTS, **given}

    def smoothing_seconds(self) -> float:
        if self.election_score_smoothing_seconds is not None:
            return self.election_score_smoothing_seconds
        return SMOOTHING_HEARTBEATS * self.timings().heartbeat


def pairs(text: str) -> dict[str, float]:
    """``"a=1, b=0.5"`` as ``{"a": 1.0, "b": 0.5}`` (ValueError on a value that is no number)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        out[key.strip()] = float(value)
    return out
