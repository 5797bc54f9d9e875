"""Writes are sealed on the client: a real DHT node takes ciphertext in and never plaintext.

The DHT runs in process on a real bus; a recorder wraps its app and keeps every
request it receives, bodies included, so the tests can say that a value written
through ``UcxlClient`` (or HAP's DecisionPublisher path) never reached the node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from chorus_common.errors import ForbiddenError, NotFoundError
from chorus_common.sealed import RoleKeyPair, seal
from chorus_common.signing import b64decode, b64encode
from chorus_common.ucxl_client import UcxlClient
from chorus_dht import app as dht_app

from .conftest import ADMIN, ADMIN_TOKEN, READ_TOKEN, SealedDht, sealed_dht

ADDRESS = "ucxl://gpt4:architect@chorus:writes/*^/decisions/plan.json"
MARKER = "PLAINTEXT-MARKER-7f3a"


@pytest.fixture
async def dht(make_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[SealedDht]:
    async with sealed_dht(make_settings, tmp_path, "dht-writes", dht_max_value_bytes=4096) as node:
        await node.register({"architect": RoleKeyPair.generate(), "ops": RoleKeyPair.generate()})
        yield node


def path(address: str) -> str:
    return f"/v1/ucxl/{quote(address, safe='')}"


async def test_a_put_through_the_client_delivers_no_plaintext_and_opens_for_its_role_only(
    dht: SealedDht,
) -> None:
    value = {"decision": "seal on the client", "secret": MARKER}
    async with UcxlClient(dht.url, ADMIN_TOKEN) as writer:
        put = await writer.put(ADDRESS, value, ["architect"], w=1)
    assert put["roles"] == ["architect"] and put["replicas"] == ["dht-writes"]

    # the PUT carried a sealed value and nothing the node could read
    (body,) = dht.recorder.bodies("PUT", "/v1/ucxl/")
    sent = json.loads(body)
    assert set(sent) == {"sealed", "roles"} and sent["sealed"]["v"] == 2
    assert not dht.recorder.received(MARKER)
    assert not dht.recorder.received("seal on the client")
    assert MARKER.encode() not in await dht.stored_bytes()
    # the client fetched the role's public key with its token; no private key travelled
    assert any(r.path == "/v1/roles/architect/keys" for r in dht.recorder.requests)
    assert not any(dht.recorder.received(k.private_text) for k in dht.keys.values())

    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        assert await reader.get(ADDRESS, "architect", dht.keys["architect"]) == value
        with pytest.raises(ForbiddenError, match="not sealed to role 'ops'"):
            await reader.get(ADDRESS, "ops", dht.keys["ops"])
        with pytest.raises(ForbiddenError, match="wrong role key"):
            await reader.get(ADDRESS, "architect", dht.keys["ops"])


async def test_role_public_keys_are_served_to_readers(dht: SealedDht) -> None:
    async with httpx.AsyncClient(base_url=dht.url) as c:
        reader = {"Authorization": f"Bearer {READ_TOKEN}"}
        got = await c.get("/v1/roles/architect/keys", headers=reader)
        missing = await c.get("/v1/roles/nobody/keys", headers=reader)
        anonymous = await c.get("/v1/roles/architect/keys")
    assert got.status_code == 200, got.text
    assert got.json() == {"role": "architect", "public_key": dht.keys["architect"].public_text}
    assert missing.status_code == 404 and "POST /v1/roles/nobody/keys" in missing.json()["detail"]
    assert anonymous.status_code == 401
    async with UcxlClient(dht.url, READ_TOKEN) as client:
        with pytest.raises(NotFoundError, match="no key is registered for role 'nobody'"):
            await client.put(ADDRESS, {"a": 1}, ["nobody"])


def _sealed(address: str, roles: list[str], keys: dict[str, RoleKeyPair], size: int = 10) -> Any:
    recipients = {role: keys[role].public_text for role in roles}
    return seal(b"x" * size, recipients, aad=address.encode()).model_dump()


async def test_a_malformed_sealed_body_is_a_422_and_an_oversize_one_a_413(dht: SealedDht) -> None:
    good = _sealed(ADDRESS, ["architect"], dht.keys)
    bodies: dict[str, dict[str, Any]] = {
        "no v": {"sealed": {k: v for k, v in good.items() if k != "v"}, "roles": ["architect"]},
        "v 1": {"sealed": good | {"v": 1}, "roles": ["architect"]},
        "other alg": {"sealed": good | {"alg": "age-x25519"}, "roles": ["architect"]},
        "roles differ": {"sealed": good, "roles": ["architect", "ops"]},
        "not base64": {"sealed": good | {"ciphertext": "not base64!"}, "roles": ["architect"]},
        "short nonce": {"sealed": good | {"nonce": b64encode(b"1234")}, "roles": ["architect"]},
        "short key": {
            "sealed": good | {"wrapped": {"architect": b64encode(b"k" * 40)}},
            "roles": ["architect"],
        },
        "both": {"sealed": good, "value": MARKER, "roles": ["architect"]},
        "neither": {"roles": ["architect"]},
        "sealed null": {"sealed": None, "roles": ["architect"]},
    }
    async with httpx.AsyncClient(base_url=dht.url, headers=ADMIN) as c:
        accepted = await c.put(path(ADDRESS), json={"sealed": good, "roles": ["architect"]})
        assert accepted.status_code == 200, accepted.text
        answers = {name: await c.put(path(ADDRESS), json=body) for name, body in bodies.items()}
        oversize = await c.put(
            path(ADDRESS),
            json={
                "sealed": _sealed(ADDRESS, ["architect"], dht.keys, 4097),
                "roles": ["architect"],
            },
        )
        at_limit = await c.put(
            path(ADDRESS),
            json={
                "sealed": _sealed(ADDRESS, ["architect"], dht.keys, 4096),
                "roles": ["architect"],
            },
        )
    for name, resp in answers.items():
        assert resp.status_code == 422, (name, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json"), name
    assert answers["roles differ"].json()["reason"] == "sealed_roles_mismatch"
    assert "must be the same" in answers["roles differ"].json()["detail"]
    for name in ("not base64", "short nonce", "short key"):
        assert answers[name].json()["reason"] == "sealed_malformed", name
    assert "exactly one" in answers["both"].text and "exactly one" in answers["neither"].text
    assert oversize.status_code == 413 and "the limit is 4096" in oversize.json()["detail"]
    assert at_limit.status_code == 200, at_limit.text
    # nothing refused was stored: the record is the one accepted last
    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        record = await reader.record(ADDRESS)
    assert len(b64decode(record["sealed"]["ciphertext"])) == 4096 + 16


async def test_a_record_sealed_for_another_address_is_stored_but_opens_for_nobody(
    dht: SealedDht,
) -> None:
    """The node holds no key, so it cannot check the address binding; readers can."""
    other = "ucxl://gpt4:architect@chorus:writes/*^/decisions/other.json"
    async with httpx.AsyncClient(base_url=dht.url, headers=ADMIN) as c:
        resp = await c.put(
            path(ADDRESS),
            json={"sealed": _sealed(other, ["architect"], dht.keys), "roles": ["architect"]},
        )
    assert resp.status_code == 200, resp.text
    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        with pytest.raises(ForbiddenError, match="altered"):
            await reader.get(ADDRESS, "architect", dht.keys["architect"])


async def test_a_plaintext_put_still_works_deprecated_and_is_warned_about_once(
    dht: SealedDht, caplog: pytest.LogCaptureFixture
) -> None:
    dht_app._PLAINTEXT_WARNED.clear()  # another test in this process may have warned
    caplog.set_level(logging.WARNING, logger="chorus.dht")
    async with httpx.AsyncClient(base_url=dht.url, headers=ADMIN) as c:
        for i in range(3):
            resp = await c.put(path(ADDRESS), json={"value": {"n": i}, "roles": ["architect"]})
            assert resp.status_code == 200, resp.text
        schema = (await c.get("/openapi.json")).json()["components"]["schemas"]["PutValue"]
    warnings = [r for r in caplog.records if "plaintext value (deprecated)" in r.getMessage()]
    assert len(warnings) == 1 and "PUT /v1/ucxl" in warnings[0].getMessage()
    assert schema["properties"]["value"]["deprecated"] is True
    assert "sealed" in schema["properties"]
    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        assert await reader.get(ADDRESS, "architect", dht.keys["architect"]) == {"n": 2}


async def test_a_decision_published_through_the_client_is_sealed_before_it_leaves(
    dht: SealedDht,
) -> None:
    async with UcxlClient(dht.url, ADMIN_TOKEN) as client:
        result = await client.publish_decision(
            decision=f"adopt HPKE {MARKER}",
            rationale="writes sealed too",
            author="gpt4",
            role="architect",
            project="chorus",
            task="t1",
            roles=["architect"],
            w=1,
        )
    address = result["address"]
    assert address.startswith("ucxl://gpt4:architect@chorus:t1/*^/decisions/")
    (body,) = dht.recorder.bodies("POST", "/v1/decisions")
    assert "decision" not in json.loads(body) and json.loads(body)["sealed"]["v"] == 2
    assert not dht.recorder.received(MARKER) and not dht.recorder.received("writes sealed too")
    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        record = await reader.get(address, "architect", dht.keys["architect"])
        with pytest.raises(ForbiddenError):
            await reader.get(address, "ops", dht.keys["ops"])
    assert record["decision"] == f"adopt HPKE {MARKER}" and record["task"] == "t1"
    assert record["decision_id"] in address and record["rationale"] == "writes sealed too"

    # a sealed decision body that also carries plaintext, or no decision_id, is refused
    sealed = _sealed(address, ["architect"], dht.keys)
    base = {"author": "gpt4", "project": "chorus", "sealed": sealed, "roles": ["architect"]}
    async with httpx.AsyncClient(base_url=dht.url, headers=ADMIN) as c:
        leaks = await c.post(
            "/v1/decisions", json=base | {"decision_id": "abcdef", "rationale": MARKER}
        )
        unnamed = await c.post("/v1/decisions", json=base)
    assert leaks.status_code == 422 and "inside `sealed`" in leaks.text
    assert unnamed.status_code == 422 and "decision_id" in unnamed.text
