"""CHORUS pubsub-gateway service: hTTP, WebSocket and SSE way onto the CHORUS bus."""

from chorus_gateway.service import GatewayService

__all__ = ["GatewayService"]
