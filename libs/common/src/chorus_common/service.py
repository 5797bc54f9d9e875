"""The base every CHORUS service stands on.

A service subclasses :class:`Service`, names itself, and adds its domain:
routes in :meth:`Service.routes`, start-up in :meth:`Service.setup`, clean-up in
:meth:`Service.teardown`, NATS micro endpoints in :meth:`Service.micro_endpoints`.
Everything else is here once: the FastAPI app with the health endpoints and
``/metrics``, problem+json errors, the bus connection (retried in the
background so a service starts before NATS does and reports not-ready), NATS
micro registration (``$SRV.PING/INFO/STATS``), redacted logs, and a graceful
SIGTERM shutdown within ``CHORUS_SHUTDOWN_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, TypeVar

import nats.errors
import nats.micro
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute, iter_route_contexts
from nats.micro.request import Request as MicroRequest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common import tracing
from chorus_common.aio import cancel_and_wait
from chorus_common.backbeat import Tracker
from chorus_common.bodies import check_body
from chorus_common.bus import Bus, retry_until
from chorus_common.config import ChorusSettings, load_settings
from chorus_common.dependencies import requirement
from chorus_common.errors import (
    AuthError,
    ChorusError,
    ConfigError,
    ForbiddenError,
    HttpStatusError,
    RequestInvalidError,
    UnavailableError,
)
from chorus_common.health import Check, HealthRegistry
from chorus_common.http_protocols import server_options
from chorus_common.identity import Identity, TokenBook, split_tokens
from chorus_common.identity import Scope as TokenScope
from chorus_common.license_gate import LicenseGate
from chorus_common.logs import configure_logging
from chorus_common.metrics import ServiceMetrics
from chorus_common.topology import BUCKET_REGISTRY

__all__ = [
    "ALWAYS_SERVED",
    "BODY_CHECKED",
    "MicroHandler",
    "Service",
    "api_routes",
    "main",
    "problem_response",
    "problem_responses",
    "serves_before_setup",
]

log = logging.getLogger("chorus.service")
#: the request state key under which the body guard leaves the body it checked
BODY_CHECKED = "chorus_body_checked"
#: how long set-up waits for a NATS server or JetStream that is briefly away
SETUP_BUS_WAIT_SECONDS = 120.0
T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"
MicroHandler = Callable[[MicroRequest], Awaitable[None]]

#: what a problem status means, as the OpenAPI document says it
PROBLEM_STATUSES: dict[int, str] = {
    400: "Malformed request",
    401: "Missing or wrong bearer token",
    403: "Not allowed (or no license seat: state changes fail closed)",
    404: "Not found",
    409: "Conflict: a compare-and-set was lost, a duplicate, or a stale term",
    413: "Too large",
    415: "Unsupported media type: send a Content-Type the operation takes (application/json)",
    422: "Invalid request: a body, query or path value fails validation",
    429: "Rate limited; Retry-After says when to try again",
    503: "A dependency (the NATS bus, storage, an upstream) is unavailable; try again",
}
#: RFC 9457 problem details, the body of every error (chorus_common.errors.ChorusError)
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def _problem_doc(status: int) -> dict[str, Any]:
    return {
        "description": PROBLEM_STATUSES.get(status, "Problem"),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the problem+json statuses it answers besides success.

    The base documents 401 on routes behind a bearer token, 403 on state-changing
    routes when the license gate is on, 400 and 415 on routes with a body (one that
    cannot be read, or of a Content-Type the route does not take: ``_BodyGuard``),
    and turns FastAPI's 422 into problem+json;
    a route names the rest (404, 409, 503, …) itself.
    """
    return {status: _problem_doc(status) for status in statuses}


def problem_response(error: ChorusError, instance: str | None = None) -> JSONResponse:
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error.to_problem(instance),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


class Service:
    """Base class of every service; subclasses set ``name`` and add their domain."""

    name: ClassVar[str] = "service"
    description: ClassVar[str] = "CHORUS service"
    version: ClassVar[str] = "0.1.0"
    settings_class: ClassVar[type[ChorusSettings]] = ChorusSettings
    #: whether this service's work needs a license seat (the licensing service, which
    #: grants the seats, is the one that does not)
    needs_seat: ClassVar[bool] = True
    #: paths (and everything under them) that check a sign-in of their own, such as HAP's
    #: web UI with its session cookie, instead of a bearer token
    session_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: ChorusSettings | None = None) -> None:
        self.settings = settings if settings is not None else load_settings(self.settings_class)
        s = self.settings
        self.metrics = ServiceMetrics(self.name, self.version, s.node_id, s.environment, s.cluster)
        self.bus = Bus(s, name=f"chorus-{self.name}-{s.node_id}", metrics=self.metrics.bus)
        self.health = HealthRegistry(
            interval=s.health_interval_seconds,
            metrics=self.metrics.health,
            on_critical_failure=self._critical_failure if s.health_shutdown_on_critical else None,
        )
        self.health.add("nats", self._check_bus, critical=True, timeout=s.health_timeout_seconds)
        self.started_at = time.time()
        #: served by :meth:`run` (this process is the service's), not in-process beside others
        self._owns_process = False
        self.micro: nats.micro.service.Service | None = None
        self._server: uvicorn.Server | None = None
        self._boot: asyncio.Task[None] | None = None
        self.setup_done = asyncio.Event()
        self.setup_error: str | None = None
        self.gate: LicenseGate | None = None
        #: called when the seat comes or goes (a leader lease steps at once, not at its next tick)
        self.on_license_change: list[Callable[[], None]] = [self.health.poke]
        # consumers pull only while this service may work (chorus_common.bus.Consumer)
        self.bus.admit = lambda: self.licensed
        #: reports this service's operations on the beat (SPEC.md §8); started with the bus
        self.tracker = Tracker(self.bus, self.settings.node_id)
        #: who a bearer token is; enrolled tokens are looked up once the bus is connected
        self.tokens = TokenBook()
        if s.admin_token is not None:
            admin = Identity("operator", "admin", frozenset({TokenScope.ADMIN}))
            self.tokens.add([s.admin_token.get_secret_value()], admin)
        reader = Identity("operator", "reader", frozenset({TokenScope.READ}))
        self.tokens.add(split_tokens(s.read_tokens), reader)
        for tokens, identity in self.configured_identities():
            self.tokens.add(tokens, identity)
        self._scopes: dict[int, tuple[TokenScope | None, bool]] = {}
        self.app = self._build_app()

    # -- what subclasses fill in -------------------------------------------------

    #: the service's ``APIRouter``s (module-level endpoints in its ``app.py``)
    routers: ClassVar[tuple[APIRouter, ...]] = ()

    def routes(self, app: FastAPI) -> None:
        """Add the service's own routes."""

    async def setup(self) -> None:
        """Start domain work; runs once the bus is connected and the topology declared."""

    async def teardown(self) -> None:
        """Stop domain work and release what it holds; runs before the bus drains."""

    def micro_endpoints(self) -> dict[str, MicroHandler]:
        """Extra NATS micro endpoints, by name (served at ``chorus.svc.<name>.<endpoint>``)."""
        return {}

    def configured_identities(self) -> list[tuple[list[str], Identity]]:
        """Tokens this service's own settings grant, beside the admin and read tokens."""
        return []

    # -- the shared parts --------------------------------------------------------

    def require_admin(self) -> Callable[..., Awaitable[Identity]]:
        """A FastAPI dependency for state-changing routes: a token with the ``admin`` scope."""
        return self.require(TokenScope.ADMIN)

    def require(self, scope: TokenScope) -> Callable[..., Awaitable[Identity]]:
        """A FastAPI dependency: a bearer token whose identity has ``scope``.

        The dependency answers the identity, which routes use to bind what a caller
        may do to who it is (an agent's token publishes only that agent's envelopes).
        The OpenAPI document names the scope of every operation (``x-chorus-scope``).
        """

        return requirement(scope)

    def provide(self, collaborator: T, as_: type[T] | None = None) -> T:
        """Hand ``collaborator`` to the routes that ask for it (``Provided(Kind)``).

        Keyed by its type, or by ``as_`` (a base class or protocol the routes name).
        """
        provided: dict[type[Any], Any] = self.app.state.provided
        provided[as_ or type(collaborator)] = collaborator
        return collaborator

    async def authorize(self, conn: HTTPConnection, scope: TokenScope) -> Identity:
        """The caller's identity if its bearer token grants ``scope``; else 401 or 403."""
        if scope is TokenScope.READ and self.settings.public_read:
            return PUBLIC_READER
        if not self.tokens.configured:
            raise AuthError(f"this endpoint needs a token with the {scope} scope, and none is set")
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
        identity = await self.tokens.resolve(token.strip())
        if identity is None:
            raise AuthError("the bearer token is not valid for this service")
        if not identity.allows(scope):
            raise ForbiddenError(
                f"the token of {identity.kind} {identity.name!r} lacks the {scope} scope "
                f"(it has: {', '.join(sorted(identity.scopes)) or 'none'})",
                reason="scope_missing",
                scope=str(scope),
            )
        conn.state.identity = identity
        return identity

    def route_scope(self, route: BaseRoute) -> TokenScope | None:
        """The scope a route needs: its own ``require(scope)``, else ``read`` for reads.

        Probes, metrics and the API documents are open; so are :attr:`session_paths`.
        Any other route that changes state declares its scope (or checks its own
        credentials, like enrolment) — a route that forgets is caught by the behaviour
        suite, which finds every operation without ``x-chorus-scope``.
        """
        key = id(route)
        if key in self._scopes:
            return self._scopes[key][0]
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None)
        scope: TokenScope | None = None
        dependant = getattr(route, "dependant", None)  # route and parameter dependencies
        for dep in dependant.dependencies if dependant is not None else ():
            scope = getattr(dep.call, "chorus_scope", None) or scope
        explicit = scope is not None
        reads = methods is None or bool(methods & {"GET", "HEAD"})  # websockets have no methods
        open_path = serves_before_setup(path) or _under(path, self.session_paths)
        if not explicit and reads and not open_path:
            scope = TokenScope.READ
        # implicit read scopes are checked by _guard_reads; explicit ones by their dependency
        self._scopes[key] = (scope, not explicit and scope is not None)
        return scope

    async def _guard_reads(self, request: HTTPConnection) -> None:
        """App-wide dependency: every read route needs ``read`` unless it says otherwise."""
        route = request.scope.get("route")
        if route is not None and self._scopes.get(id(route), (None, False))[1]:
            await self.authorize(request, TokenScope.READ)

    @property
    def gated(self) -> bool:
        """Whether the license gate applies here (CHORUS_LICENSE_REQUIRED and a seat-needing service)."""
        return self.settings.license_required and self.needs_seat

    @property
    def licensed(self) -> bool:
        """May this service do its work now: no gate, or a valid seat lease.

        Every path that changes state asks this — REST (``_LicenseGuard``), NATS micro
        endpoints, JetStream consumers and leader leases — so no way in fails open.
        """
        return not self.gated or (self.gate is not None and self.gate.open)

    def require_license(self) -> None:
        """Raise 403 ``license_unavailable`` unless :attr:`licensed`."""
        if not self.gated:
            return
        if self.gate is None:
            raise ForbiddenError(
                "this service holds no license seat yet: it is still connecting",
                reason="license_unavailable",
            )
        self.gate.check()

    def _license_changed(self) -> None:
        for callback in self.on_license_change:
            callback()

    def _licensed_micro(self, endpoint: str, handler: MicroHandler) -> MicroHandler:
        """A micro endpoint that answers ``{"ok": false, "error": <403 problem>}`` without a seat.

        The same shape as the endpoints' own refusals, so an SDK agent's ``claim`` over
        NATS fails exactly as its REST twin does (``reason: license_unavailable``).
        """
        errors = self.metrics.system.errors

        async def guarded(request: MicroRequest) -> None:
            try:
                self.require_license()
            except ChorusError as exc:
                errors.labels(exc.code).inc()
                problem = exc.to_problem(f"chorus.svc.{self.name}.{endpoint}")
                await request.respond(json.dumps({"ok": False, "error": problem}).encode())
                return
            await handler(request)

        return guarded

    async def _check_bus(self) -> str | None:
        if not self.bus.is_connected:
            raise UnavailableError(f"not connected to NATS at {self.settings.nats_url}")
        rtt = await self.bus.rtt(timeout=self.settings.health_timeout_seconds)
        return f"rtt {rtt * 1000:.2f} ms"

    def _critical_failure(self, check: Check) -> None:
        log.error("critical check %s failed (%s); shutting down", check.name, check.detail)
        if self._server is not None:
            self._server.should_exit = True

    async def start(self) -> None:
        """Begin serving: health loop now, bus and domain set-up in the background."""
        tracing.configure_tracing(f"chorus-{self.name}", self.settings.otel_exporter)
        self.health.start()
        self._boot = asyncio.create_task(self._bootstrap(), name=f"{self.name}-bootstrap")

    async def _bootstrap(self) -> None:
        try:
            await self._connect_and_setup()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # stay up and say why: /health/ready names the failed set-up instead of a crash loop
            self.setup_error = f"{type(exc).__name__}: {exc}"
            log.exception("set-up of %s failed; the service stays not ready", self.name)

    async def _connect_and_setup(self) -> None:
        await self.bus.connect(timeout=float("inf"))
        # enrolled tokens (identity.<digest>) live in the registry every service can read;
        # a replica (re)starting while a NATS node is away waits for it rather than staying
        # not ready for good (the chaos run caught HAP there)
        self.tokens.kv = await retry_until(
            time.monotonic() + SETUP_BUS_WAIT_SECONDS,
            lambda: self.bus.jetstream.key_value(BUCKET_REGISTRY),
            what=f"the registry bucket for {self.name}",
            retry_on=(nats.errors.Error, TimeoutError),
            give_up=lambda exc: f"the registry bucket did not open: {exc!r}",
        )
        self.micro = await nats.micro.add_service(
            self.bus.client,
            name=f"chorus-{self.name}",
            version=self.version,
            description=self.description,
            metadata={"node_id": self.settings.node_id, "http": self.http_url},
        )
        group = self.micro.add_group(name=f"chorus.svc.{self.name}")
        await group.add_endpoint(name="health", handler=self._micro_health)
        await self.tracker.start()
        if self.gated:
            self.gate = LicenseGate(
                self.bus, self.settings.node_id, self.name, on_change=self._license_changed
            )
            self.health.add("license", self.gate.health, critical=True)
            self.gate.start()
        await self.setup()
        # domain endpoints join the queue group only now: a request must never reach a
        # replica whose set-up is half done (it would fail where a ready replica answers)
        for endpoint, handler in self.micro_endpoints().items():
            await group.add_endpoint(name=endpoint, handler=self._licensed_micro(endpoint, handler))
        if self._owns_process:
            # set-up's connections, clients and caches live as long as the process too: freeze
            # them beside the imports (a full collection walked ~100k more objects otherwise)
            gc.collect()
            gc.freeze()
        self.setup_done.set()
        self.health.poke()
        log.info("%s ready on %s (bus %s)", self.name, self.http_url, self.settings.nats_url)

    async def _micro_health(self, request: MicroRequest) -> None:
        await request.respond(json.dumps(self.health_document()).encode())

    async def stop(self) -> None:
        await cancel_and_wait(self._boot)
        if self.setup_done.is_set():
            try:
                await asyncio.wait_for(
                    self.teardown(), timeout=self.settings.shutdown_timeout_seconds / 2
                )
            except Exception:
                log.exception("teardown of %s did not finish cleanly", self.name)
        await self.health.stop()
        await self.tracker.stop()
        if self.gate is not None:
            await self.gate.stop()  # give the seat back at once
        if self.micro is not None:
            with contextlib.suppress(Exception):
                await self.micro.stop()
        await self.bus.close()

    @property
    def http_url(self) -> str:
        port = self.settings.http_port
        if self._server is not None and self._server.servers:
            sockets = self._server.servers[0].sockets
            if sockets:
                port = sockets[0].getsockname()[1]
        return f"http://{self.settings.http_host}:{port}"

    def health_document(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "version": self.version,
            "node_id": self.settings.node_id,
            "status": self.health.summary(),
            "ready": self.health.ready and self.setup_done.is_set(),
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "checks": {c.name: c.status for c in self.health.checks.values()},
        }

    @property
    def ready(self) -> bool:
        return self.health.ready and self.setup_done.is_set()

    def _build_app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(
            title=f"CHORUS {self.name}",
            description=self.description,
            version=self.version,
            lifespan=lifespan,
            dependencies=[Depends(self._guard_reads)],
        )
        app.state.service = self
        app.state.provided = {}
        self._install_errors(app)
        app.add_middleware(_BodyGuard, service=self)
        app.add_middleware(_LicenseGuard, service=self)
        app.add_middleware(_StartingGuard, service=self)
        app.add_middleware(_HttpMetrics, service=self)

        async def health() -> JSONResponse:
            doc = self.health_document()
            return JSONResponse(doc, status_code=200 if doc["ready"] else 503)

        async def live() -> dict[str, str]:
            return {"status": "alive", "service": self.name}

        async def ready() -> JSONResponse:
            failing = [
                c.as_dict()
                for c in self.health.checks.values()
                if c.critical and c.status != "pass"
            ]
            if not self.setup_done.is_set():
                failing.append(
                    {
                        "name": "setup",
                        "status": "fail" if self.setup_error else "pending",
                        "critical": True,
                        "detail": self.setup_error,
                    }
                )
            ok = self.ready
            return JSONResponse(
                {"status": "ready" if ok else "not ready", "failing": failing},
                status_code=200 if ok else 503,
            )

        async def checks() -> dict[str, Any]:
            return {
                "status": self.health.summary(),
                "checks": [c.as_dict() for c in self.health.checks.values()],
            }

        async def metrics() -> PlainTextResponse:
            return PlainTextResponse(
                generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST
            )

        not_ready: dict[int | str, dict[str, Any]] = {
            503: {
                "description": "Not ready: the same document, naming what fails",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        }
        app.add_api_route("/health", health, methods=["GET"], tags=["health"], responses=not_ready)
        app.add_api_route("/health/live", live, methods=["GET"], tags=["health"])
        app.add_api_route(
            "/health/ready", ready, methods=["GET"], tags=["health"], responses=not_ready
        )
        app.add_api_route("/health/checks", checks, methods=["GET"], tags=["health"])
        app.add_api_route("/livez", live, methods=["GET"], tags=["health"])
        app.add_api_route("/readyz", ready, methods=["GET"], tags=["health"], responses=not_ready)
        app.add_api_route(
            "/metrics",
            metrics,
            methods=["GET"],
            tags=["metrics"],
            response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        )
        for router in self.routers:
            app.include_router(router)
        self.routes(app)
        own = {id(route) for route in app.router.routes}
        for route in api_routes(app):
            self.route_scope(route)
            if id(route) not in own and getattr(route, "methods", None) is None:
                implicit = self._scopes[id(route)][1]
                if implicit:  # the app-wide read guard never runs for it: it would be open
                    raise TypeError(
                        f"websocket route {getattr(route, 'path', route)!r} of an included "
                        "router must name its scope: dependencies=[Requires(Scope.READ)]"
                    )
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                app.openapi_schema = self._document_problems(generate())
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]
        return app

    def _document_problems(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Every error status a route answers, in problem+json, in the OpenAPI document."""
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        guarded = self.gated
        doc["components"].setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "a token whose identity has the operation's scope (x-chorus-scope)",
        }
        scopes = {  # path_format: the path as OpenAPI spells it ({address}, not {address:path})
            (path, method): self.route_scope(route)
            for route in api_routes(self.app)
            if (path := getattr(route, "path_format", None))
            for method in getattr(route, "methods", None) or ()
        }
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                scope = scopes.get((path, method.upper()))
                if scope is not None:
                    operation["x-chorus-scope"] = str(scope)
                    operation["security"] = [{"bearer": [str(scope)]}]
                    operation.setdefault("responses", {}).setdefault("403", _problem_doc(403))
                responses = operation.setdefault("responses", {})
                if "422" in responses:  # validation errors are problem+json, not FastAPI's shape
                    responses["422"] = _problem_doc(422)
                if "requestBody" in operation:  # not UTF-8, too deep, a wrong type (_BodyGuard)
                    responses.setdefault("400", _problem_doc(400))
                    responses.setdefault("415", _problem_doc(415))
                if operation.get("security"):
                    responses.setdefault("401", _problem_doc(401))
                if guarded and method.upper() in _LicenseGuard.MUTATING:
                    responses.setdefault("403", _problem_doc(403))
                if not serves_before_setup(path):  # still starting (_StartingGuard)
                    responses.setdefault("503", _problem_doc(503))
        # FastAPI's own validation-error schemas, once nothing refers to them any more
        for unused in ("HTTPValidationError", "ValidationError"):
            if f"#/components/schemas/{unused}" not in json.dumps([doc.get("paths"), schemas]):
                schemas.pop(unused, None)
        return doc

    def _install_errors(self, app: FastAPI) -> None:
        counter = self.metrics.system.errors

        async def chorus_error(request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, ChorusError)
            counter.labels(exc.code).inc()
            return problem_response(exc, request.url.path)

        async def validation_error(request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, RequestValidationError)
            errors = [
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
            first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
            where = ".".join(first["loc"]) or "request"
            error = RequestInvalidError(f"{where}: {first['msg']}", errors=errors)
            counter.labels(error.code).inc()
            return problem_response(error, request.url.path)

        async def http_error(request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, StarletteHTTPException)
            error = HttpStatusError(str(exc.detail), exc.status_code)
            counter.labels(error.code).inc()
            return problem_response(error, request.url.path)

        async def bus_error(request: Request, exc: Exception) -> JSONResponse:
            # the bus is down or slow: a dependency problem the client may retry, not a bug
            counter.labels(UnavailableError.code).inc()
            detail = str(exc) or type(exc).__name__
            return problem_response(
                UnavailableError(f"the NATS bus did not answer ({detail}); try again shortly"),
                request.url.path,
            )

        async def unexpected(request: Request, exc: Exception) -> JSONResponse:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            counter.labels("internal").inc()
            return problem_response(
                ChorusError("internal error; the service log has the details"),
                request.url.path,
            )

        app.add_exception_handler(ChorusError, chorus_error)
        app.add_exception_handler(RequestValidationError, validation_error)
        app.add_exception_handler(StarletteHTTPException, http_error)
        app.add_exception_handler(nats.errors.Error, bus_error)
        app.add_exception_handler(TimeoutError, bus_error)
        app.add_exception_handler(Exception, unexpected)

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT; the process entry point of every service."""
        configure_logging(self.settings.log_level, self.settings.log_format, self.name)
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(self.settings.shutdown_timeout_seconds),
            **server_options(self.settings),
        )
        self._server = _GracefulServer(config)
        self._owns_process = True
        # what imports and the app built lives as long as the process: out of the
        # collector's sight, a full collection takes microseconds instead of ~30 ms
        # (75k objects), a pause that otherwise lands on some request every so often
        gc.collect()
        gc.freeze()
        # a young collection every 10k allocations, not 700: each full one walks every
        # connection's objects (~50 ms with 700 subscribers), now considered every 1M
        gc.set_threshold(10_000, 10, 10)
        self._server.run()


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, so the process would die by signal.

    A drained, cleanly stopped service should exit 0 instead, which is what
    Kubernetes, compose and `chorus up` expect from a graceful stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield


#: paths that answer while the service is still setting up (probes, metrics, the API description)
ALWAYS_SERVED = ("/health", "/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """``path`` is one of ``prefixes`` or below one (``/`` stands for itself only)."""
    return any(
        path == p or (p.rstrip("/") != "" and path.startswith(p.rstrip("/") + "/"))
        for p in prefixes
    )


def serves_before_setup(path: str) -> bool:
    return _under(path, ALWAYS_SERVED)


#: who reads when CHORUS_PUBLIC_READ=true
PUBLIC_READER = Identity("operator", "public", frozenset({TokenScope.READ}))


class _StartingGuard:
    """Until set-up has finished, a domain route answers 503 with Retry-After, not a 500.

    HTTP is up before the bus and the domain objects are (so probes can say why
    a service is not ready); a request arriving then, e.g. right after a
    restart, would otherwise hit half-built state.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not self.service.setup_done.is_set()
            and not serves_before_setup(scope.get("path", ""))
        ):
            name = f"chorus-{self.service.name}"
            error = UnavailableError(
                f"{name} failed to set up ({self.service.setup_error}); see its /health/ready"
                if self.service.setup_error
                else f"{name} is still starting; retry shortly",
            )
            error.retry_after = 1  # type: ignore[attr-defined]
            self.service.metrics.system.errors.labels(error.code).inc()
            await problem_response(error, scope.get("path"))(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _LicenseGuard:
    """Fail closed: without a license seat, state-changing requests are refused with 403."""

    MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in self.MUTATING:
            try:
                self.service.require_license()
            except ChorusError as exc:
                self.service.metrics.system.errors.labels(exc.code).inc()
                await problem_response(exc, scope.get("path"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _BodyGuard:
    """Every route's body is checked before the route reads it (``chorus_common.bodies``).

    A route says what it takes as its OpenAPI ``requestBody`` does: a FastAPI body
    field (JSON, or a form), or ``openapi_extra={"requestBody": {"content": …}}`` for a
    route that reads ``request.body()`` itself, such as the gateway's envelopes and
    HAP's web forms (``chorus_common.bodies.FORM_BODY``). A route that declares no body
    is passed through unread. The body is read here once and handed on unchanged.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self._taken: dict[int, frozenset[str] | None] = {}
        self._routes: list[APIRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = self._accepted(scope) if scope["type"] == "http" else None
        if accepted is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: nothing to check
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1") or None
        try:
            check_body(body, content_type, accepted)
        except ChorusError as exc:
            self.service.metrics.system.errors.labels(exc.code).inc()
            await problem_response(exc, scope.get("path"))(scope, receive, send)
            return
        # a route that reads its body itself need not check it again (the publish path)
        scope.setdefault("state", {})[BODY_CHECKED] = body
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    def _accepted(self, scope: Scope) -> frozenset[str] | None:
        """The media types of the route this request reaches, or None: no body to check."""
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return None
        if self._routes is None:  # the app's routes are all added by the time requests come
            self._routes = [r for r in api_routes(self.service.app) if isinstance(r, APIRoute)]
        for route in self._routes:
            if route.matches(scope)[0] is Match.FULL:
                if id(route) not in self._taken:
                    self._taken[id(route)] = _media_types(route)
                return self._taken[id(route)]
        return None


def api_routes(app: FastAPI) -> list[BaseRoute]:
    """Every route of ``app``, those of included routers too, as the objects requests reach.

    FastAPI includes a router as one lazy entry of ``app.routes``; a request's
    ``scope["route"]`` is the router's own route object, which is what the read
    guard, the scopes and the body guard must know.
    """
    return [context.route for context in iter_route_contexts(app.routes)]


def _media_types(route: APIRoute) -> frozenset[str] | None:
    """What a route's body may be, as its OpenAPI ``requestBody`` says (None: no body)."""
    declared = (route.openapi_extra or {}).get("requestBody", {}).get("content", {})
    taken = set(declared)
    if route.body_field is not None:
        info = route.body_field.field_info
        if isinstance(info, Form):
            taken |= {"application/x-www-form-urlencoded", "multipart/form-data"}
        else:
            taken.add(getattr(info, "media_type", None) or "application/json")
    return frozenset(taken) or None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands out ``messages``, then what the client sends next."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class _HttpMetrics:
    """Counts and times requests by route template (not raw path: bounded label values)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.metrics = service.metrics.system

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_latency.labels(method, template).observe(
                time.perf_counter() - started
            )


def main(service_class: type[Service]) -> None:
    """``python -m chorus_<name>``: build from the environment, serve, exit cleanly."""
    try:
        service = service_class()
    except ConfigError as exc:
        print(f"chorus-{service_class.name}: {exc.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    service.run()
