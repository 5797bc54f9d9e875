"""The HAP web UI in a real browser (Debian's Chromium through Playwright) against a real bus."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from chorus_common.bus import Bus, Delivery
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.sealed import RoleKeyPair
from chorus_common.testing import serve_in_process, wait_until
from chorus_dht import DhtService
from chorus_dht.service import DhtSettings
from chorus_hap import HapService
from chorus_hap.settings import HapSettings

UCXL_PREFIX = "ucxl://gpt4:architect@chorus:v2/*^/docs/"
ADMIN = {"Authorization": "Bearer test-admin-token"}
ARTIFACTS = Path(__file__).resolve().parents[3] / "tests" / "artifacts" / "hap"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail("chromium is missing: `make setup` installs Debian's chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def hap(
    make_settings: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[tuple[HapService, str]]:
    dht = DhtService(
        make_settings(DhtSettings, node_id="dht-solo", data_dir=tmp_path / "dht", dht_replication=1)
    )
    async with serve_in_process(dht) as dht_url:
        settings = make_settings(
            HapSettings,
            hap_tokens="alice-token=alice,bob-token=bob",
            hap_quorum=2,
            hap_dht_url=dht_url,
            hap_role="architect",
            data_dir=tmp_path / "hap",
        )
        service = HapService(settings)
        async with (
            serve_in_process(service) as url,
            httpx.AsyncClient(base_url=dht_url, headers=ADMIN) as c,
        ):
            # the person's role key is registered with the DHT; one value is sealed to it, one is not
            role = service.portal.role_key()
            await c.post("/v1/roles/architect/keys", json={"public_key": role.public_text})
            await c.post(
                "/v1/roles/ops/keys", json={"public_key": RoleKeyPair.generate().public_text}
            )
            for name, roles in (("plan", ["architect"]), ("runbook", ["ops"])):
                resp = await c.put(
                    f"/v1/ucxl/{quote(UCXL_PREFIX + name + '.json', safe='')}",
                    json={"value": {"doc": name, "text": f"the {name}"}, "roles": roles},
                )
                assert resp.status_code == 200, resp.text
            yield service, url


async def login(browser: Browser, url: str, token: str, console: list[str] | None = None) -> Page:
    page = await (await browser.new_context()).new_page()
    if console is not None:
        page.on("console", lambda msg: console.append(msg.text))
    await page.goto(f"{url}/ui/login")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    return page


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_login_live_feed_wizard_and_voting(
    browser: Browser, hap: tuple[HapService, str], bus_client: Bus
) -> None:
    service, url = hap
    bad = await (await browser.new_context()).new_page()
    await bad.goto(f"{url}/ui/login")
    await bad.fill("input[name=token]", "wrong")
    await bad.click("button[type=submit]")
    await expect(bad.locator(".error")).to_contain_text("not valid")

    console: list[str] = []
    alice = await login(browser, url, "alice-token", console)
    await expect(alice.locator("#agent")).to_have_text("alice")
    await shot(alice, "01-feed")

    # a message published by another agent appears live
    await asyncio.sleep(0.5)  # the EventSource connects
    other = Envelope(
        type=MessageType.STATUS_UPDATE,
        sender="agent-x",
        payload={"agent": "agent-x", "status": "compiling the world"},
    )
    await bus_client.publish(other)
    await expect(alice.locator("#feed li.live").first).to_contain_text(
        "compiling the world", timeout=10000
    )
    await shot(alice, "02-feed-live")
    # Enter in the filter re-connects the feed without reloading the page (feed.js, not inline)
    await alice.evaluate("window.sameDocument = true")
    await alice.fill("#subject", "chorus.role.>")
    await alice.press("#subject", "Enter")
    await asyncio.sleep(0.5)  # the new EventSource connects
    await bus_client.publish(
        Envelope(
            type=MessageType.STATUS_UPDATE,
            sender="agent-y",
            payload={"agent": "agent-y", "status": "filtered and live"},
        )
    )
    await expect(alice.locator("#feed li.live").first).to_contain_text(
        "filtered and live", timeout=10000
    )
    assert await alice.evaluate("window.sameDocument === true")

    # the HMMM wizard: thread -> compose (with a secret) -> preview shows redaction -> send
    received: list[Envelope] = []

    async def on_hmmm(env: Envelope, d: Delivery) -> None:
        received.append(env)

    await bus_client.subscribe("chorus.hmmm.api-v2.>", "hap-test", on_hmmm)
    await alice.goto(f"{url}/ui/hmmm")
    await alice.fill("input[name=thread]", "api-v2")
    await alice.click("button[type=submit]")
    await alice.click("button[type=submit]")  # empty message
    await expect(alice.locator(".error")).to_contain_text("empty")
    await alice.fill("textarea[name=text]", "Ship v2? the token=abcdef123456 is rotated")
    await alice.click("button[type=submit]")
    await expect(alice.locator("#redactions")).to_contain_text("secret_assignment")
    await expect(alice.locator("#preview")).not_to_contain_text("abcdef123456")
    await shot(alice, "03-hmmm-preview")
    await alice.click("button[type=submit]")
    await expect(alice.locator("#sent")).to_contain_text("entry 1 of your feed")
    await wait_until(lambda: received, timeout=10, message="another agent receives the message")
    assert received[0].sender == "alice" and received[0].thread == "api-v2"
    assert "abcdef123456" not in received[0].model_dump_json() and received[0].feed_seq == 1

    # decisions: open, vote twice to quorum, a vote on a closed decision is refused
    await alice.goto(f"{url}/ui/decisions")
    await alice.fill("input[name=title]", "Adopt NATS 2.12")
    await alice.click("form[action='/ui/decisions'] button")
    await expect(alice.locator(".notice")).to_contain_text("opened")
    decision = alice.locator(".decision").first
    await decision.locator("select[name=choice]").select_option("approve")
    await decision.locator("button").click()
    await expect(alice.locator(".decision .tally").first).to_contain_text("approve 1")
    await shot(alice, "04-decision-voted")

    bob = await login(browser, url, "bob-token")
    await bob.goto(f"{url}/ui/decisions")
    await bob.locator(".decision select[name=choice]").first.select_option("reject")
    await bob.locator(".decision button").first.click()
    await expect(bob.locator(".decision .tally").first).to_contain_text("closed")
    await expect(bob.locator(".decision .address").first).to_contain_text(
        "ucxl://bob:architect@hap:"
    )
    decision_id = next(iter(service.portal.book.decisions))
    assert service.portal.book.decisions[decision_id].tally() == {
        "approve": 1,
        "reject": 1,
        "abstain": 0,
    }

    carol_late = await bob.context.request.post(
        f"{url}/ui/decisions/{decision_id}/vote", form={"choice": "approve"}, max_redirects=0
    )
    assert "closed" in (carol_late.headers.get("location") or "")
    await shot(bob, "05-decision-closed")

    # peers and the UCXL browser say clearly what is there and what is not
    await alice.goto(f"{url}/ui/peers")
    await expect(alice.locator("#peers")).to_contain_text("alice")
    await alice.goto(f"{url}/ui/ucxl?prefix={quote(UCXL_PREFIX, safe='')}")
    await shot(alice, "06-ucxl-list")
    await expect(alice.locator("#addresses li")).to_have_count(2)
    await alice.click(f"text={UCXL_PREFIX}plan.json")
    await expect(alice.locator("#record")).to_contain_text("the plan")
    await shot(alice, "06-ucxl-record")
    await alice.goto(f"{url}/ui/ucxl/view?address={quote(UCXL_PREFIX + 'runbook.json', safe='')}")
    await expect(alice.locator(".error")).to_contain_text("not sealed to role 'architect'")

    # every page ran under the Content-Security-Policy without the browser refusing anything
    assert not [m for m in console if "Content Security Policy" in m], console

    # a forged or expired session cookie sends the person back to sign in, with the reason
    await alice.context.add_cookies([{"name": "hap_session", "value": "alice|1|00", "url": url}])
    await alice.goto(f"{url}/ui/decisions")
    await expect(alice.locator(".error")).to_contain_text("sign in again")
