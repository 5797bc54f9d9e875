"""Wiring and lifecycle of the hap service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class HapService(Service):
    name = "hap"
    description = "Human Agent Portal: terminal and web UI"
