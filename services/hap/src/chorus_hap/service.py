"""Wiring and lifecycle of HAP: the web UI (chorus_hap.web) and a JSON API
(chorus_hap.app) over the same portal the terminal UI uses."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.routing import APIRoute

from chorus_common.service import Service
from chorus_common.topology import BUCKET_HAP_SESSIONS
from chorus_hap import app as api
from chorus_hap import web
from chorus_hap.metrics import HapMetrics
from chorus_hap.portal import Portal
from chorus_hap.sessions import SessionSeal, SessionStore, load_session_key
from chorus_hap.settings import HapSettings

__all__ = ["HapService"]


class HapService(Service):
    name = "hap"
    description = "Human Agent Portal: terminal and web UI"
    settings_class = HapSettings
    settings: HapSettings
    routers = (api.router, web.router)
    #: the web UI signs people in with its own session cookie (chorus_hap.sessions)
    session_paths = ("/", "/ui")  # "/" redirects to the sign-in

    def __init__(self, settings: HapSettings | None = None) -> None:
        super().__init__(settings)
        _include_eagerly(self)
        self.hap_metrics = self.provide(HapMetrics(self.metrics.registry))
        self.provide(self.settings, as_=HapSettings)
        self.provide(web.Logins(self.settings))

    def routes(self, app: FastAPI) -> None:
        web.mount(app)

    async def setup(self) -> None:
        s = self.settings
        self.portal = Portal(self.bus, s.data_dir, s.hap_quorum, s.hap_role, s.hap_dht_url)
        self.portal.on_sent = lambda mtype: self.hap_metrics.sent.labels(mtype).inc()
        if s.admin_token is not None:
            self.portal.admin_token = s.admin_token.get_secret_value()
        await self.portal.start()
        await self.portal.person(s.agent_id())
        # an empty value (compose's ${CHORUS_HAP_SESSION_KEY:-}) means the data folder's key
        setting = (s.hap_session_key.get_secret_value() if s.hap_session_key else "") or None
        key = await asyncio.to_thread(load_session_key, setting, s.data_dir)
        self.sessions = SessionStore(
            await self.bus.js.key_value(BUCKET_HAP_SESSIONS),
            SessionSeal(key, s.hap_session_seconds),
        )
        self.provide(self.portal)
        self.provide(self.sessions)

    async def teardown(self) -> None:
        await self.portal.stop()


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
