"""CHORUS backbeat service: beat clock, operation telemetry, budgets and drift."""

from chorus_backbeat.service import BackbeatService

__all__ = ["BackbeatService"]
