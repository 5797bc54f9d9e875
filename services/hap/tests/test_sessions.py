"""HAP web sessions: nothing forged offline opens one, sign-out and revocation end them everywhere.

Against real nats-server (the sessions bucket is shared by replicas), real
uvicorn servers, and for TLS a real Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import re
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.async_api import async_playwright

from chorus_common.bus import Bus
from chorus_common.errors import ConfigError
from chorus_common.testing import serve_in_process, wait_until
from chorus_common.topology import BUCKET_HAP_SESSIONS
from chorus_hap import HapService, web
from chorus_hap.sessions import (
    KEY_FILE,
    SessionError,
    SessionSeal,
    load_session_key,
)
from chorus_hap.settings import HapSettings

TOKENS = "alice-token=alice,bob-token=bob"
SHARED_KEY = "a-shared-session-key-from-a-kubernetes-secret-0123456789"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TEMPLATES = Path(web.__file__).parent / "templates"


# -- the pure rules ------------------------------------------------------------


def test_a_session_ends_at_expiry_and_when_its_token_no_longer_signs_in_that_person() -> None:
    seal = SessionSeal(b"k" * 32, lifetime=60)
    record = seal.record("alice", "alice-token", now=1000)
    logins = {"alice-token": "alice"}
    assert seal.person(record, logins, now=1059) == "alice"
    with pytest.raises(SessionError, match="expired"):
        seal.person(record, logins, now=1060)
    with pytest.raises(SessionError, match="no longer accepted"):
        seal.person(record, {"bob-token": "bob"}, now=1030)
    with pytest.raises(SessionError, match="no longer accepted"):
        seal.person(record, {"alice-token": "mallory"}, now=1030)  # the token now names another
    # the record names the token only by a keyed fingerprint: another key, another name
    assert "alice-token" not in record.model_dump_json()
    assert SessionSeal(b"j" * 32, 60).fingerprint("alice-token") != record.token


def test_only_issued_ids_are_looked_up() -> None:
    seal = SessionSeal(b"k" * 32, lifetime=60)
    assert seal.record_key(seal.new_id()).startswith("s.")
    for cookie in ("alice|99999999999|00", "", "x" * 43 + "|", "../" * 15):
        with pytest.raises(SessionError, match="not valid"):
            seal.record_key(cookie)


def test_the_key_is_made_once_0600_and_reused_or_taken_from_the_setting(tmp_path: Path) -> None:
    key = load_session_key(None, tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_session_key(None, tmp_path / "data") == key
    assert load_session_key(None, tmp_path / "other") != key  # random, not derived
    path.chmod(0o644)
    assert load_session_key(None, tmp_path / "data") == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    from_secret = load_session_key(SHARED_KEY, tmp_path / "data")
    assert from_secret == load_session_key(SHARED_KEY, tmp_path / "elsewhere") != key
    with pytest.raises(ConfigError, match="at least 32"):
        load_session_key("short", tmp_path)
    path.write_bytes(b"truncated")
    with pytest.raises(ConfigError, match="delete it"):
        load_session_key(None, tmp_path / "data")


# -- against real servers ------------------------------------------------------


@pytest.fixture
def start_hap(
    make_settings: Callable[..., Any], tmp_path: Path
) -> Callable[..., contextlib.AbstractAsyncContextManager[tuple[HapService, str]]]:
    """Start a HAP on this test's bus: ``async with start_hap("a", **settings) as (svc, url)``."""

    @contextlib.asynccontextmanager
    async def start(name: str, **overrides: Any) -> AsyncIterator[tuple[HapService, str]]:
        values: dict[str, Any] = {
            "hap_tokens": TOKENS,
            "node_id": f"hap-{name}",
            "data_dir": tmp_path / name,
            **overrides,
        }
        service = HapService(make_settings(HapSettings, **values))
        async with serve_in_process(service) as url:
            yield service, url

    return start


async def sign_in(url: str, token: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as c:
        resp = await c.post("/ui/login", data={"token": token}, headers=headers)
    assert resp.status_code == 303, resp.text
    return resp


async def session_of(url: str, token: str) -> str:
    return (await sign_in(url, token)).cookies["hap_session"]


async def page_as(url: str, cookie: str, path: str = "/ui/decisions") -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, cookies={"hap_session": cookie}) as c:
        return await c.get(path)


def signed_in_as(resp: httpx.Response) -> str | None:
    found = re.search(r'<b id="agent">([^<]+)</b>', resp.text)
    return found.group(1) if resp.status_code == 200 and found else None


def refused(resp: httpx.Response) -> str:
    """The reason a page sent the browser back to sign in (fails if it did not)."""
    assert resp.status_code == 303, resp.text
    location = resp.headers["location"]
    assert location.startswith("/ui/login?error="), location
    return httpx.URL(location).params["error"]


async def test_a_cookie_forged_from_the_public_node_id_is_refused(
    start_hap: Callable[..., Any],
) -> None:
    """The audit's attack: no admin token, people sign in with CHORUS_HAP_TOKENS, and the old
    session key was sha256(node id + "hap-sessions"), the node id being public."""
    async with start_hap("solo", admin_token=None) as (service, url):
        async with httpx.AsyncClient(base_url=url) as c:
            node_id = (await c.get("/health")).json()["node_id"]
            old_key = hashlib.sha256(b"" + node_id.encode() + b"hap-sessions").digest()
            body = f"alice|{time.time() + 3600:.0f}"
            forged = f"{body}|{hmac.new(old_key, body.encode(), hashlib.sha256).hexdigest()}"
            c.cookies.set("hap_session", forged)
            opened = await c.post("/ui/decisions", data={"title": "Signed as alice by mallory"})
            assert "not valid" in refused(opened)
            assert "not valid" in refused(await c.get("/ui/decisions"))
        assert service.portal.book.decisions == {}


async def test_what_the_sessions_bucket_shows_a_reader_opens_no_session(
    start_hap: Callable[..., Any], bus_client: Bus
) -> None:
    """Every JetStream user can read KV; the record's key and content must not be a cookie."""
    async with start_hap("solo") as (_, url):
        cookie = await session_of(url, "alice-token")
        kv = await bus_client.jetstream.key_value(BUCKET_HAP_SESSIONS)
        keys = await kv.keys()
        assert len(keys) == 1 and cookie not in keys[0]
        record = (await kv.get(keys[0])).value or b""
        assert cookie.encode() not in record and b"alice-token" not in record
        for candidate in (keys[0], keys[0].removeprefix("s."), keys[0].removeprefix("s.")[:43]):
            refused(await page_as(url, candidate))
        assert signed_in_as(await page_as(url, cookie)) == "alice"


async def test_a_session_works_on_every_replica_and_sign_out_ends_it_on_all(
    start_hap: Callable[..., Any],
) -> None:
    async with (
        start_hap("a", hap_session_key=SHARED_KEY) as (_, url_a),
        start_hap("b", hap_session_key=SHARED_KEY) as (_, url_b),
    ):
        alice = await session_of(url_a, "alice-token")
        bob = await session_of(url_b, "bob-token")
        assert signed_in_as(await page_as(url_b, alice)) == "alice"
        assert signed_in_as(await page_as(url_a, bob)) == "bob"

        signed_out = await page_as(url_b, alice, "/ui/logout")
        assert signed_out.status_code == 303
        assert 'hap_session=""' in signed_out.headers["set-cookie"]  # the browser forgets it
        # a copy of the old cookie (kept by an attacker, another tab) is refused on both
        assert "not valid" in refused(await page_as(url_a, alice))
        assert "not valid" in refused(await page_as(url_b, alice))
        assert signed_in_as(await page_as(url_a, bob)) == "bob"  # only alice signed out


async def test_removing_a_token_ends_its_sessions_and_others_survive_the_restart(
    start_hap: Callable[..., Any],
) -> None:
    async with start_hap("solo") as (_, url):
        alice = await session_of(url, "alice-token")
        bob = await session_of(url, "bob-token")
        assert signed_in_as(await page_as(url, alice)) == "alice"
    # restarted with alice's token gone: the same data folder, so the same session key
    async with start_hap("solo", hap_tokens="bob-token=bob") as (_, url):
        assert "no longer accepted" in refused(await page_as(url, alice))
        assert "not valid" in refused(await page_as(url, alice))  # and the record is gone
        assert signed_in_as(await page_as(url, bob)) == "bob"
        async with httpx.AsyncClient(base_url=url) as c:
            resp = await c.post("/ui/login", data={"token": "alice-token"})
            assert resp.status_code == 401


async def test_sessions_expire_in_the_bucket(
    start_hap: Callable[..., Any], bus_client: Bus
) -> None:
    async with start_hap("solo", hap_session_seconds=2) as (_, url):
        cookie = await session_of(url, "alice-token")
        assert signed_in_as(await page_as(url, cookie)) == "alice"
        kv = await bus_client.jetstream.key_value(BUCKET_HAP_SESSIONS)

        async def gone() -> bool:
            with contextlib.suppress(Exception):
                return not await kv.keys()
            return True

        deadline = time.monotonic() + 10
        while not await gone():  # the server drops the record itself (per-message TTL)
            assert time.monotonic() < deadline, "the session record outlived its TTL"
            await asyncio.sleep(0.2)
        refused(await page_as(url, cookie))


async def test_the_live_feed_stops_when_its_session_ends(
    start_hap: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "KEEP_ALIVE_SECONDS", 0.3)
    async with start_hap("solo") as (_, url):
        cookie = await session_of(url, "alice-token")
        async with (
            httpx.AsyncClient(base_url=url, cookies={"hap_session": cookie}) as c,
            c.stream("GET", "/ui/events") as stream,
        ):
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert await anext(lines) == ": live"
            await page_as(url, cookie, "/ui/logout")

            async def drain() -> None:
                async for _ in lines:
                    pass

            await asyncio.wait_for(drain(), timeout=5)  # the server ended the stream


async def test_ui_responses_carry_the_security_headers(start_hap: Callable[..., Any]) -> None:
    async with start_hap("solo") as (_, url), httpx.AsyncClient(base_url=url) as c:
        c.cookies.set("hap_session", await session_of(url, "alice-token"))
        for path in ("/ui/login", "/ui/static/feed.js", "/ui/decisions", "/ui"):
            resp = await c.get(path)
            assert resp.status_code == 200, (path, resp.status_code)
            h = resp.headers
            csp = h["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert h["x-frame-options"] == "DENY"
            assert h["x-content-type-options"] == "nosniff"
            assert h["referrer-policy"] == "no-referrer"
            assert ("no-store" in h.get("cache-control", "")) != path.startswith("/ui/static/")
        assert "content-security-policy" not in (await c.get("/health")).headers
    # the policy forbids inline script, so the templates must have none
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "style=" not in text, template.name


async def test_cookies_are_secure_behind_a_tls_proxy_and_httponly_strict_always(
    start_hap: Callable[..., Any],
) -> None:
    async with start_hap("solo") as (_, url):
        plain = (await sign_in(url, "alice-token")).headers["set-cookie"].lower()
        assert "httponly" in plain and "samesite=strict" in plain and "path=/" in plain
        assert "; secure" not in plain
        proxied = await sign_in(url, "alice-token", **{"X-Forwarded-Proto": "https"})
        assert "; secure" in proxied.headers["set-cookie"].lower()
        assert proxied.headers["strict-transport-security"].startswith("max-age=")
    async with start_hap("always", hap_secure_cookies="always") as (_, url):
        assert "; secure" in (await sign_in(url, "alice-token")).headers["set-cookie"].lower()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_over_tls_a_browser_keeps_a_secure_cookie_and_the_session_works(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """uvicorn serving TLS itself (no proxy header): the browser gets a Secure cookie."""
    cert, key = _self_signed(tmp_path)
    service = HapService(make_settings(HapSettings, hap_tokens=TOKENS, data_dir=tmp_path / "tls"))
    config = uvicorn.Config(
        service.app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="on",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started and service.ready, timeout=15, message="ready")
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"https://127.0.0.1:{port}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                context = await browser.new_context(ignore_https_errors=True)
                page = await context.new_page()
                await page.goto(f"{url}/ui/login")
                await page.fill("input[name=token]", "alice-token")
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{url}/ui")
                assert await page.text_content("#agent") == "alice"
                (cookie,) = await context.cookies()
                assert cookie["name"] == "hap_session"
                assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
                # what the page's scripts cannot read, they cannot leak
                assert "hap_session" not in await page.evaluate("document.cookie")
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, timeout=15)
