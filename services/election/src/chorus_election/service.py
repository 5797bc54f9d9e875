"""Wiring and lifecycle of the election service: every replica is a participant;
REST shows and steers the election (chorus_election.app)."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

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
        _include_eagerly(self)
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


def _include_eagerly(service: Service) -> None:
    """Stand-in until chorus_common.service does this itself: put the routes of
    ``service.routers`` on the app one by one, where the base included each router whole.

    FastAPI 0.165's ``include_router`` adds one lazy entry per router, which the base's
    read guard, body guard and OpenAPI scopes (they walk ``app.routes`` for APIRoutes) do
    not look into: reads would go unguarded and scopes undocumented. This builds each
    route as the app's own (with the app's dependencies, the read guard among them), in
    the included router's place, and learns its scope as the base does.
    """
    app = service.app
    routes = app.router.routes
    for included in type(service).routers:
        place = next(
            (
                i
                for i, entry in enumerate(routes)
                if getattr(entry, "original_router", None) is included
            ),
            None,
        )
        if place is None:
            continue
        before = len(routes)
        for route in included.routes:
            assert isinstance(route, APIRoute), f"{route!r} is not an API route"
            app.router.add_api_route(
                route.path,
                route.endpoint,
                response_model=route.response_model,
                status_code=route.status_code,
                tags=route.tags,
                dependencies=route.dependencies,
                summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                responses=route.responses,
                deprecated=route.deprecated,
                methods=route.methods,
                operation_id=route.operation_id,
                response_model_include=route.response_model_include,
                response_model_exclude=route.response_model_exclude,
                response_model_by_alias=route.response_model_by_alias,
                response_model_exclude_unset=route.response_model_exclude_unset,
                response_model_exclude_defaults=route.response_model_exclude_defaults,
                response_model_exclude_none=route.response_model_exclude_none,
                include_in_schema=route.include_in_schema,
                response_class=route.response_class,
                name=route.name,
                route_class_override=type(route),
                callbacks=route.callbacks,
                openapi_extra=route.openapi_extra,
                generate_unique_id_function=route.generate_unique_id_function,
                strict_content_type=route.strict_content_type,
                max_body_size=route.max_body_size,
            )
        added = routes[before:]
        del routes[before:]
        routes[place : place + 1] = added
        for route in added:
            service.route_scope(route)
