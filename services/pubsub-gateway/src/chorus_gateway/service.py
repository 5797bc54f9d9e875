"""Wiring and lifecycle of the pub/sub gateway."""

from __future__ import annotations

import redis.asyncio as redis
from fastapi import FastAPI

from chorus_common.bus import Bus
from chorus_common.identity import Identity, Scope
from chorus_common.registry import AgentDirectory, FeedIndex
from chorus_common.service import Service
from chorus_common.shhh import Redactor, default_redactor, settings_secrets
from chorus_gateway import app as routes
from chorus_gateway import enrolment
from chorus_gateway.metrics import GatewayMetrics
from chorus_gateway.publishing import Publisher
from chorus_gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from chorus_gateway.settings import GatewaySettings
from chorus_gateway.streaming import SubscriberHub
from chorus_gateway.verification import FeedAuditor


class GatewayService(Service):
    name = "pubsub-gateway"
    description = "HTTP, WebSocket and SSE way onto the CHORUS bus"
    settings_class = GatewaySettings
    settings: GatewaySettings
    routers = (routes.router, enrolment.router)

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        super().__init__(settings)
        self.gateway_metrics = self.provide(GatewayMetrics(self.metrics.registry))
        self.provide(self.settings, as_=GatewaySettings)
        self.provide(self.bus, as_=Bus)
        self._redis: redis.Redis | None = None

    def configured_identities(self) -> list[tuple[list[str], Identity]]:
        publisher = Identity("service", "publisher", frozenset({Scope.PUBLISH, Scope.READ}))
        return [(self.settings.publish_tokens(), publisher)]

    def routes(self, app: FastAPI) -> None:
        routes.document_envelopes(app)

    async def setup(self) -> None:
        s = self.settings
        limiter: RateLimiter
        if s.redis_url:
            self._redis = redis.from_url(s.redis_url)
            limiter = RedisRateLimiter(self._redis, s.gateway_rate_per_second, s.gateway_rate_burst)
            self.health.add(
                "redis", self._check_redis, critical=False, timeout=s.health_timeout_seconds
            )
        else:
            limiter = MemoryRateLimiter(s.gateway_rate_per_second, s.gateway_rate_burst)

            async def memory_limits() -> str:
                return "rate limits kept in this process (set CHORUS_REDIS_URL to share them)"

            self.health.add("rate_limits", memory_limits, critical=False)
        self.directory = self.provide(await AgentDirectory.open(self.bus))
        self.feeds = await FeedIndex.open(self.bus)
        self.hub = self.provide(SubscriberHub(self.bus))
        self.auditor = self.provide(
            FeedAuditor(self.bus, self.directory, s.gateway_verify_scan_max)
        )

        self.provide(enrolment.Enrolment(self.bus, self.tokens, self.directory, s.node_id))
        self.publisher = self.provide(
            Publisher(
                self.bus,
                self.directory,
                self.feeds,
                limiter,
                s,
                self.gateway_metrics,
                redactor=self._redactor(),
                tracker=self.tracker,
            )
        )

    def _redactor(self) -> Redactor:
        """SHHH knowing this gateway's own tokens and passwords: an agent that pastes the
        admin or a publish token into a message has it redacted, and so do the logs."""
        secrets = [*settings_secrets(self.settings), *self.settings.publish_tokens()]
        default_redactor().add_secrets(secrets)
        return Redactor(secrets=secrets)

    async def _check_redis(self) -> str:
        assert self._redis is not None
        await self._redis.ping()
        return "rate limits shared through Redis"

    async def teardown(self) -> None:
        if hasattr(self, "hub"):
            await self.hub.close()
        if self._redis is not None:
            await self._redis.aclose()
