"""Chaos testing: a replicated constellation, random faults, a workload and its invariants.

``tests/chaos`` runs a minute of it in the suite; the same test runs for as long
as ``CHORUS_CHAOS_SECONDS`` says, by hand (see docs/testing.md).
"""

from chorus_cli.testing.chaos.constellation import ChaosConstellation, Fault
from chorus_cli.testing.chaos.workload import Observed, Pace, Targets, Workload

__all__ = ["ChaosConstellation", "Fault", "Observed", "Pace", "Targets", "Workload"]
