"""Wiring and lifecycle of the licensing service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class LicensingService(Service):
    name = "licensing"
    description = "License validation and cluster seat leases"
