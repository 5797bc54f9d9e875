"""Aliases shared by the payload modules, so the schemas read the same everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

#: An identifier of a task, session, request or event: opaque, non-empty.
Id = str
#: A fraction between 0 and 1 (progress, confidence, relevance, load).
Ratio = float


def now() -> datetime:
    """Aware UTC time, so timestamps compare across hosts."""
    return datetime.now(UTC)
