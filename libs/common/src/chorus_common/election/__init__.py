"""The CHORUS admin election: pure rules, real score measurement, and the bus participant."""

from chorus_common.election.participant import ElectionRecord, Participant, ParticipantHooks
from chorus_common.election.rules import (
    ADMIN_STEPPED_DOWN,
    COMPONENTS,
    DEFAULT_CHALLENGE_MARGIN,
    DEFAULT_SCORE_QUANTUM,
    DEFAULT_WEIGHTS,
    SMOOTHING_HEARTBEATS,
    ElectionRules,
    Score,
    ScoreSmoother,
    State,
    StepDownReason,
    Timings,
    Trigger,
)
from chorus_common.election.score import ScoreSource

__all__ = [
    "ADMIN_STEPPED_DOWN",
    "COMPONENTS",
    "DEFAULT_CHALLENGE_MARGIN",
    "DEFAULT_SCORE_QUANTUM",
    "DEFAULT_WEIGHTS",
    "SMOOTHING_HEARTBEATS",
    "ElectionRecord",
    "ElectionRules",
    "Participant",
    "ParticipantHooks",
    "Score",
    "ScoreSmoother",
    "ScoreSource",
    "State",
    "StepDownReason",
    "Timings",
    "Trigger",
]
