"""Backbeat settings: CHORUS_* common ones plus the tempo, bars, drift and the pulse lease."""

from __future__ import annotations

from pydantic import Field

from chorus_common.backbeat import BAR_LENGTH
from chorus_common.config import ChorusSettings

__all__ = ["BackbeatSettings"]


class BackbeatSettings(ChorusSettings):
    backbeat_tempo_bpm: float = Field(default=2.0, gt=0, le=6000)
    backbeat_bar_length: int = Field(default=BAR_LENGTH, ge=1)
    backbeat_drift_tolerance_beats: int = Field(default=2, ge=0)
    backbeat_silence_beats: int = Field(default=4, ge=1)
    backbeat_lease_ttl_seconds: float = Field(default=1.0, gt=0)
