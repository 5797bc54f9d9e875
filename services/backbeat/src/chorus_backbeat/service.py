"""Wiring and lifecycle of the backbeat service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class BackbeatService(Service):
    name = "backbeat"
    description = "Beat clock, operation telemetry, budgets and drift"
