"""Wiring and lifecycle of the coordinator service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class CoordinatorService(Service):
    name = "coordinator"
    description = "Task board, scored assignment and meta-coordination"
