"""Wiring and lifecycle of the election service: every replica is a participant;
REST shows and steers the election (chorus_election.app)."""

from __future__ import annotations

from typing import Any

from chorus_common.election import Participant
from chorus_common.service import Service
from chorus_election.app import router
from chorus_election.metrics import ElectionMetrics
from chorus_election.participation import open_participant
from chorus_election.settings import ElectionSettings

__all__ = ["ElectionService", "ElectionSettings"]


class ElectionService(Service):
    name = "election"
    description = "Democratic admin election with fencing terms"
    settings_class = ElectionSettings
    settings: ElectionSettings
    routers = (router,)

    def __init__(self, settings: ElectionSettings | None = None) -> None:
        super().__init__(settings)
        self.election_metrics = ElectionMetrics(self.metrics.registry)
        self.participant: Participant | None = None

    async def setup(self) -> None:
        self.participant = await open_participant(
            self.bus,
            self.settings,
            self.election_metrics,
            service=self.name,
            licensed=lambda: self.licensed,
            gated=self.gated,
        )
        self.provide(self.participant)
        await self.participant.start()

    async def teardown(self) -> None:
        if self.participant is not None:
            await self.participant.stop()

    def health_document(self) -> dict[str, Any]:
        doc = super().health_document()
        if self.participant is not None:
            doc["election"] = {
                "admin": self.participant.rules.admin,
                "is_admin": self.participant.is_admin,
            }
        return doc
