"""The CHORUS admin election: pure rules, real score measurement, and the bus participant."""

from chorus_common.election.participant import ElectionRecord, Participant, ParticipantHooks
from chorus_common.election.rules import (
    COMPONENTS,
    DEFAULT_WEIGHTS,
    ElectionRules,
    Score,
    State,
    Timings,
    Trigger,
)
from chorus_common.election.score import ScoreSource

__all__ = [
    "COMPONENTS",
    "DEFAULT_WEIGHTS",
    "ElectionRecord",
    "ElectionRules",
    "Participant",
    "ParticipantHooks",
    "Score",
    "ScoreSource",
    "State",
    "Timings",
    "Trigger",
]
