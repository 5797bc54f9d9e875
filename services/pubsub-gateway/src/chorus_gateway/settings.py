"""Gateway settings: CHORUS_* common ones plus the gateway's own."""

from __future__ import annotations

from pydantic import Field

from chorus_common.config import ChorusSettings
from chorus_common.identity import split_tokens


class GatewaySettings(ChorusSettings):
    #: bearer tokens allowed to publish as any sender, and read (comma-separated); the admin
    #: token always may
    gateway_tokens: str = ""
    gateway_rate_per_second: float = Field(default=200.0, gt=0)
    gateway_rate_burst: int = Field(default=2000, ge=1)
    gateway_batch_max: int = Field(default=1000, ge=1, le=10000)
    #: messages waiting for one SSE/WebSocket client before it is dropped as a slow consumer
    gateway_subscriber_queue: int = Field(default=1000, ge=1)
    #: stream messages one GET /v1/feeds/{agent}/verify reads at most (it says where to go on)
    gateway_verify_scan_max: int = Field(default=10_000, ge=1)
    gateway_hop_limit: int = Field(default=3, ge=0, le=16)
    gateway_read_limit_max: int = Field(default=500, ge=1)
    #: envelopes whose created_at is further than this from the gateway's clock are refused
    gateway_max_clock_skew_seconds: float = Field(default=300.0, gt=0)

    def publish_tokens(self) -> list[str]:
        """Configured publish tokens; enrolled agents get theirs from the enrolment routes."""
        return split_tokens(self.gateway_tokens)
