"""CHORUS election service: democratic admin election with fencing terms."""

from chorus_election.service import ElectionService

__all__ = ["ElectionService"]
