"""Wiring and lifecycle of the pubsub-gateway service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class GatewayService(Service):
    name = "pubsub-gateway"
    description = "HTTP, WebSocket and SSE way onto the CHORUS bus"
