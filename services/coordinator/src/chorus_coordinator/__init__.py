"""CHORUS coordinator service: task board, scored assignment and meta-coordination."""

from chorus_coordinator.service import CoordinatorService

__all__ = ["CoordinatorService"]
