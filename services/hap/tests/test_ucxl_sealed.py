"""HAP's UCXL browser opens values itself, and HAP seals what it writes: its role key,
and the decisions it publishes, never reach the DHT in the clear."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from chorus_common.bus import Bus
from chorus_common.errors import ChorusError
from chorus_common.sealed import RoleKeyPair
from chorus_common.testing import RequestRecorder, serve_in_process
from chorus_dht import DhtService
from chorus_dht.service import DhtSettings
from chorus_hap import HapService
from chorus_hap.portal import Portal
from chorus_hap.settings import HapSettings

ADDRESS = "ucxl://gpt4:architect@chorus:hap/*^/docs/plan.json"
ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_the_ucxl_browser_decrypts_locally(
    bus_client: Bus, make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    dht = DhtService(
        make_settings(DhtSettings, node_id="dht-hap", data_dir=tmp_path / "dht", dht_replication=1)
    )
    seen: list[str] = []

    @dht.app.middleware("http")
    async def record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen.append(str(request.url) + json.dumps(dict(request.headers)))
        return await call_next(request)

    async with serve_in_process(dht) as dht_url:
        portal = Portal(bus_client, tmp_path / "hap", quorum=1, role="architect", dht_url=dht_url)
        portal.admin_token = "test-admin-token"
        role = portal.role_key()
        try:
            async with httpx.AsyncClient(base_url=dht_url, headers=ADMIN) as c:
                await c.post("/v1/roles/architect/keys", json={"public_key": role.public_text})
                await c.post(
                    "/v1/roles/ops/keys", json={"public_key": RoleKeyPair.generate().public_text}
                )
                for address, roles in ((ADDRESS, ["architect"]), (ADDRESS + ".ops", ["ops"])):
                    resp = await c.put(
                        f"/v1/ucxl/{quote(address, safe='')}",
                        json={"value": {"text": "the plan"}, "roles": roles},
                    )
                    assert resp.status_code == 200, resp.text

            shown = await portal.ucxl(f"/v1/ucxl/{quote(ADDRESS, safe='')}", decrypt=True)
            assert shown["value"] == {"text": "the plan"} and "sealed" not in shown
            # the terminal UI passes the address unquoted
            assert (await portal.ucxl(f"/v1/ucxl/{ADDRESS}", decrypt=True))["value"] == {
                "text": "the plan"
            }
            with pytest.raises(ChorusError, match="not sealed to role 'architect'"):
                await portal.ucxl(f"/v1/ucxl/{quote(ADDRESS + '.ops', safe='')}", decrypt=True)
        finally:
            await portal.stop()
    assert seen and not any(role.private_text in line for line in seen)


async def test_a_closed_decision_is_sealed_by_hap_and_opens_in_its_ucxl_browser(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """HAP seals the outcome itself: the DHT never sees the title, tally or votes."""
    dht = DhtService(
        make_settings(
            DhtSettings, node_id="dht-hap-dec", data_dir=tmp_path / "dht", dht_replication=1
        )
    )
    recorder = RequestRecorder().attach(dht)
    async with serve_in_process(dht) as dht_url:
        hap = HapService(
            make_settings(
                HapSettings,
                hap_tokens="alice-token=alice",
                hap_quorum=1,
                hap_dht_url=dht_url,
                hap_role="architect",
                data_dir=tmp_path / "hap",
            )
        )
        async with serve_in_process(hap):
            portal = hap.portal
            async with httpx.AsyncClient(base_url=dht_url, headers=ADMIN) as c:
                resp = await c.post(
                    "/v1/roles/architect/keys", json={"public_key": portal.role_key().public_text}
                )
                assert resp.status_code == 201, resp.text
            decision_id = await portal.open_decision("alice", "Ship SECRET-TITLE-91")
            await portal.wait_decision(decision_id)
            await portal.vote("alice", decision_id, "approve", "lgtm")
            address = portal.book.decisions[decision_id].address
            assert address is not None and address.startswith("ucxl://alice:architect@hap:")

            shown = await portal.ucxl(f"/v1/ucxl/{quote(address, safe='')}", decrypt=True)
    assert shown["value"]["decision"] == "Ship SECRET-TITLE-91: approved"
    assert json.loads(shown["value"]["rationale"])["tally"]["approve"] == 1
    (body,) = recorder.bodies("POST", "/v1/decisions")
    assert json.loads(body)["sealed"]["v"] == 2 and "decision" not in json.loads(body)
    assert not recorder.received("SECRET-TITLE-91") and not recorder.received("lgtm")
    assert not recorder.received(portal.role_key().private_text)
