"""Wiring and lifecycle of the election service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class ElectionService(Service):
    name = "election"
    description = "Democratic admin election with fencing terms"
