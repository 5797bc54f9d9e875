"""The web face of HAP: server-rendered pages, a live feed over SSE, no external assets."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common.bodies import FORM_BODY
from chorus_common.dependencies import Provided
from chorus_common.errors import ChorusError, UnavailableError
from chorus_common.subjects import subject_matches, validate_filter
from chorus_hap.metrics import HapMetrics
from chorus_hap.portal import WIZARD_TYPES, FeedItem, Portal
from chorus_hap.sessions import SessionError, SessionStore
from chorus_hap.settings import HapSettings

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "COOKIE",
    "KEEP_ALIVE_SECONDS",
    "Logins",
    "SecurityHeaders",
    "mount",
    "over_https",
    "router",
]

HERE = Path(__file__).parent
COOKIE = "hap_session"
#: how often an idle live feed sends a keep-alive and checks its session is still open
KEEP_ALIVE_SECONDS = 15.0
#: the UI loads only its own script and stylesheet (no inline code) and talks only to itself
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
UI_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # page URLs carry UCXL addresses and subject filters: send them nowhere
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
    env.filters["clock"] = lambda at: datetime.fromtimestamp(at).strftime("%H:%M:%S")
    env.filters["urlencode"] = lambda s: quote(str(s), safe="")
    return env


def over_https(request: Request) -> bool:
    """Whether the browser reached us over TLS: uvicorn's own, or a proxy's (X-Forwarded-Proto).

    The header is believed from anyone: all it can do is add ``Secure`` (and HSTS),
    which only narrows where the browser sends the cookie.
    """
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


class SecurityHeaders:
    """Adds CSP, framing, sniffing and referrer headers to every ``/ui`` response.

    Pure ASGI (not ``BaseHTTPMiddleware``) so the live feed's SSE stream passes
    through untouched.  Pages, not static files, are also marked ``no-store``: a
    signed-in page must not outlive its session in a shared cache or the back button.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/ui" or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return
        extra = list(UI_HEADERS)
        if not path.startswith("/ui/static/"):
            extra.append((b"cache-control", b"no-store"))
        if over_https(Request(scope)):
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class Logins:
    """Who each web token signs in, and how the session cookie is set.

    Read once from the settings, which are frozen: a token removed takes a restart.
    """

    def __init__(self, settings: HapSettings) -> None:
        self.people = settings.logins()
        self.secure_cookies = settings.hap_secure_cookies
        self.session_seconds = settings.hap_session_seconds

    def person_of(self, token: str) -> str | None:
        """The person a token signs in, compared in constant time against every token."""
        found = None
        for known, person in self.people.items():
            if hmac.compare_digest(token.encode(), known.encode()):
                found = person
        return found

    def cookie_flags(self, request: Request) -> dict[str, Any]:
        secure = self.secure_cookies == "always" or over_https(request)
        return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def mount(app: FastAPI) -> None:
    """The UI's static files, and its security headers on every ``/ui`` response."""
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="hap-static")
    app.add_middleware(SecurityHeaders)


router = APIRouter()
TEMPLATES = _templates()

PortalDep = Annotated[Portal, Provided(Portal)]
SessionsDep = Annotated[SessionStore, Provided(SessionStore)]
LoginsDep = Annotated[Logins, Provided(Logins)]
MetricsDep = Annotated[HapMetrics, Provided(HapMetrics)]


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("title", name)
    html = TEMPLATES.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status)


async def who(request: Request, sessions: SessionStore, logins: Logins) -> str:
    return await sessions.person(request.cookies.get(COOKIE), logins.people, time.time())


async def form(request: Request) -> dict[str, str]:
    data = parse_qs((await request.body()).decode(), keep_blank_values=True)
    return {k: v[0] for k, v in data.items()}


def to_login(message: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?error={quote(message)}", status_code=303)


async def guarded(
    request: Request,
    sessions: SessionStore,
    logins: Logins,
    render: Callable[[str], Awaitable[Response]],
) -> Response:
    try:
        agent = await who(request, sessions, logins)
    except SessionError as exc:
        return to_login(str(exc))
    return await render(agent)


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


@router.get("/ui/login", include_in_schema=False)
async def login_page(error: str | None = None) -> HTMLResponse:
    return page("login.html", title="Sign in", error=error, agent=None)


@router.post("/ui/login", include_in_schema=False, openapi_extra=FORM_BODY)
async def login(
    request: Request,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
    metrics: MetricsDep,
) -> Response:
    token = (await form(request)).get("token", "")
    agent = logins.person_of(token) if token else None
    if agent is None:
        metrics.logins.labels("refused").inc()
        return page(
            "login.html",
            status=401,
            title="Sign in",
            agent=None,
            error="that token is not valid for this portal",
        )
    await portal.person(agent)  # its key is registered on first sign-in
    # a fresh id on every sign-in: a session id planted before cannot be adopted
    session_id = await sessions.open(agent, token, time.time())
    metrics.logins.labels("ok").inc()
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(logins.session_seconds),
        **logins.cookie_flags(request),
    )
    return response


@router.get("/ui/logout", include_in_schema=False)
async def logout(request: Request, sessions: SessionsDep, logins: LoginsDep) -> Response:
    # the record goes first: a copy of the cookie kept anywhere is refused from now on
    await sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, **logins.cookie_flags(request))
    return response


@router.get("/ui", include_in_schema=False)
async def feed(
    request: Request,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
    subject: str = "chorus.>",
) -> Response:
    async def render(agent: str) -> Response:
        try:
            items = list(reversed(portal.recent_items(subject)))
        except ChorusError as exc:
            return page(
                "feed.html",
                title="Feed",
                agent=agent,
                items=[],
                subject=subject,
                error=exc.detail,
            )
        return page("feed.html", title="Feed", agent=agent, items=items[:100], subject=subject)

    return await guarded(request, sessions, logins, render)


@router.get("/ui/events", include_in_schema=False)
async def events(
    request: Request,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
    metrics: MetricsDep,
    subject: str = "chorus.>",
) -> Response:
    try:
        await who(request, sessions, logins)
        validate_filter(subject)
    except (SessionError, ChorusError) as exc:
        return Response(str(exc), status_code=401 if isinstance(exc, SessionError) else 400)
    queue: asyncio.Queue[FeedItem] = asyncio.Queue(maxsize=500)

    def listener(item: FeedItem) -> None:
        if subject_matches(subject, item.subject):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(item)

    async def stream() -> Any:
        portal.listeners.add(listener)
        metrics.viewers.inc()
        try:
            yield ": live\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    # a signed-out or revoked session stops receiving the feed
                    try:
                        await who(request, sessions, logins)
                    except SessionError:
                        return
                    except UnavailableError:
                        pass  # KV unreachable for a moment: keep the stream
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: message\ndata: {json.dumps(item.as_dict())}\n\n"
        finally:
            portal.listeners.discard(listener)
            metrics.viewers.dec()

    return StreamingResponse(stream(), media_type="text/event-stream")


@router.get("/ui/peers", include_in_schema=False)
async def peers(
    request: Request, portal: PortalDep, sessions: SessionsDep, logins: LoginsDep
) -> Response:
    async def render(agent: str) -> Response:
        return page(
            "peers.html",
            title="Peers",
            agent=agent,
            peers=await portal.peers(),
            admin=await portal.admin(),
        )

    return await guarded(request, sessions, logins, render)


@router.get("/ui/hmmm", include_in_schema=False)
async def hmmm_start(request: Request, sessions: SessionsDep, logins: LoginsDep) -> Response:
    async def render(agent: str) -> Response:
        return page(
            "hmmm.html",
            title="HMMM",
            agent=agent,
            step=1,
            form={"type": "meta_discussion"},
            types=WIZARD_TYPES,
        )

    return await guarded(request, sessions, logins, render)


@router.post("/ui/hmmm", include_in_schema=False, openapi_extra=FORM_BODY)
async def hmmm_step(
    request: Request, portal: PortalDep, sessions: SessionsDep, logins: LoginsDep
) -> Response:
    data = await form(request)

    async def render(agent: str) -> Response:
        step = int(data.get("step", "1") or 1)
        ctx: dict[str, Any] = {
            "title": "HMMM",
            "agent": agent,
            "form": data,
            "types": WIZARD_TYPES,
        }
        if step <= 2:
            return page("hmmm.html", step=step, **ctx)
        try:
            preview = await portal.compose(
                agent,
                data.get("type", "meta_discussion"),
                data.get("text", ""),
                thread=data.get("thread") or None,
                task=data.get("task") or None,
            )
        except ChorusError as exc:
            return page("hmmm.html", step=2, error=exc.detail, status=422, **ctx)
        if step == 3:
            body = json.dumps(
                preview.envelope.payload.model_dump(mode="json", exclude_none=True), indent=2
            )
            return page(
                "hmmm.html",
                step=3,
                preview_text=body,
                subjects=preview.subjects,
                findings=sorted({f.pattern for f in preview.findings}),
                **ctx,
            )
        result = await portal.send(agent, preview)
        return page("hmmm.html", step=4, result=result, **ctx)

    return await guarded(request, sessions, logins, render)


@router.get("/ui/ucxl", include_in_schema=False)
async def ucxl(
    request: Request,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
    prefix: str = "",
) -> Response:
    async def render(agent: str) -> Response:
        addresses: list[str] = []
        error = None
        if prefix:
            try:
                listing = await portal.ucxl("/v1/ucxl", {"prefix": prefix})
                items = listing.get("items", listing.get("addresses", []))
                addresses = [i["address"] if isinstance(i, dict) else str(i) for i in items]
            except ChorusError as exc:
                error = exc.detail
        return page(
            "ucxl.html",
            title="UCXL",
            agent=agent,
            prefix=prefix,
            addresses=addresses,
            record=None,
            error=error,
        )

    return await guarded(request, sessions, logins, render)


@router.get("/ui/ucxl/view", include_in_schema=False)
async def ucxl_view(
    request: Request,
    address: str,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
) -> Response:
    async def render(agent: str) -> Response:
        try:
            record = await portal.ucxl(f"/v1/ucxl/{quote(address, safe='')}", decrypt=True)
            text = json.dumps(record, indent=2)
            error = None
        except ChorusError as exc:
            text, error = None, exc.detail
        return page(
            "ucxl.html",
            title="UCXL",
            agent=agent,
            prefix="",
            addresses=[],
            record=text,
            address=address,
            error=error,
        )

    return await guarded(request, sessions, logins, render)


@router.get("/ui/decisions", include_in_schema=False)
async def decisions(
    request: Request,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
    metrics: MetricsDep,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    async def render(agent: str) -> Response:
        items = [d.as_dict() for d in portal.book.decisions.values()]
        metrics.decisions.set(sum(1 for d in items if not d["closed"]))
        return page(
            "decisions.html",
            title="Decisions",
            agent=agent,
            decisions=items,
            error=error,
            notice=notice,
        )

    return await guarded(request, sessions, logins, render)


@router.post("/ui/decisions", include_in_schema=False, openapi_extra=FORM_BODY)
async def open_decision(
    request: Request, portal: PortalDep, sessions: SessionsDep, logins: LoginsDep
) -> Response:
    data = await form(request)

    async def render(agent: str) -> Response:
        title = data.get("title", "").strip()
        if not title:
            return RedirectResponse("/ui/decisions?error=" + quote("a decision needs a title"), 303)
        decision_id = await portal.open_decision(agent, title)
        await portal.wait_decision(decision_id)
        return RedirectResponse(f"/ui/decisions?notice={quote('opened ' + decision_id)}", 303)

    return await guarded(request, sessions, logins, render)


@router.post("/ui/decisions/{decision_id}/vote", include_in_schema=False, openapi_extra=FORM_BODY)
async def vote(
    request: Request,
    decision_id: str,
    portal: PortalDep,
    sessions: SessionsDep,
    logins: LoginsDep,
) -> Response:
    data = await form(request)

    async def render(agent: str) -> Response:
        try:
            await portal.vote(agent, decision_id, data.get("choice", ""), data.get("comment", ""))
        except ChorusError as exc:
            return RedirectResponse("/ui/decisions?error=" + quote(exc.detail), 303)
        return RedirectResponse("/ui/decisions?notice=" + quote("vote recorded"), 303)

    return await guarded(request, sessions, logins, render)
