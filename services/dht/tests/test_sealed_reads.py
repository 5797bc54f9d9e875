"""Values stay sealed end to end: a real DHT service serves ciphertext, clients open it.

The DHT runs in process on a real bus with reads behind a read token; a
middleware on its app records every request it receives, so the tests can say
that no role private key ever reached it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from chorus_common.errors import ForbiddenError
from chorus_common.sealed import RoleKeyPair, upgrade_needed
from chorus_common.ucxl import UcxlAddress
from chorus_common.ucxl_client import UcxlClient

from .conftest import ADMIN_TOKEN, READ_TOKEN, SealedDht, sealed_dht

ADDRESS = "ucxl://gpt4:architect@chorus:e2e/*^/decisions/plan.json"
V1 = json.loads((Path(__file__).parents[3] / "libs/common/tests/sealed_v1.json").read_text())


@pytest.fixture
async def dht(make_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[SealedDht]:
    async with sealed_dht(make_settings, tmp_path, "dht-sealed") as node:
        yield node


async def test_values_open_on_the_client_and_the_node_never_sees_a_role_key(dht: SealedDht) -> None:
    arch, ops = RoleKeyPair.generate(), RoleKeyPair.generate()
    await dht.register({"architect": arch, "ops": ops})
    value = {"decision": "use HPKE", "secret": "PLAINTEXT-MARKER"}
    async with UcxlClient(dht.url, ADMIN_TOKEN) as writer:
        put = await writer.put(ADDRESS, value, ["architect"])
    assert put["roles"] == ["architect"]

    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        assert await reader.get(ADDRESS, "architect", arch) == value
        record = await reader.record(ADDRESS)
        with pytest.raises(ForbiddenError, match="not sealed to role 'ops'"):
            await reader.get(ADDRESS, "ops", ops)
        with pytest.raises(ForbiddenError, match="wrong role key"):
            await reader.get(ADDRESS, "architect", ops)
    # what the node serves and stores is ciphertext in the HPKE format, never the value
    assert "value" not in record and record["sealed"]["v"] == 2
    assert record["sealed"]["alg"] == "hpke-x25519-sha256-chacha20poly1305"
    assert b"PLAINTEXT-MARKER" not in json.dumps(record).encode()
    assert b"PLAINTEXT-MARKER" not in await dht.stored_bytes()
    # the reads went with the read token, and no role private key reached the node
    assert any(
        r.method == "GET" and r.headers.get("authorization") == f"Bearer {READ_TOKEN}"
        for r in dht.recorder.requests
    )
    assert not dht.received(arch.private_text) and not dht.received(ops.private_text)


async def test_a_read_that_sends_a_role_key_is_refused_and_gets_no_plaintext(
    dht: SealedDht,
) -> None:
    arch = RoleKeyPair.generate()
    await dht.register({"architect": arch})
    async with UcxlClient(dht.url, ADMIN_TOKEN) as writer:
        await writer.put(ADDRESS, {"secret": "PLAINTEXT-MARKER"}, ["architect"])
    async with httpx.AsyncClient(base_url=dht.url) as c:
        resp = await c.get(
            f"/v1/ucxl/{quote(ADDRESS, safe='')}",
            headers={
                "Authorization": f"Bearer {READ_TOKEN}",
                "X-Chorus-Role": "architect",
                "X-Chorus-Role-Key": arch.private_text,
            },
        )
        unauthenticated = await c.get(f"/v1/ucxl/{quote(ADDRESS, safe='')}")
    assert resp.status_code == 422, resp.text
    assert resp.json()["reason"] == "role_key_refused"
    assert "does not take role private keys" in resp.json()["detail"]
    assert "PLAINTEXT-MARKER" not in resp.text and "value" not in resp.json()
    assert unauthenticated.status_code == 401


async def test_a_version_1_record_opens_and_a_key_holder_upgrades_it(dht: SealedDht) -> None:
    """A record sealed before HPKE stays readable; `upgrade` writes it again sealed with HPKE.

    The node cannot upgrade it (it never holds a role key); a holder of one of its roles can.
    """
    keys = {role: RoleKeyPair.from_private(text) for role, text in V1["keys"].items()}
    await dht.register(keys)
    address = str(UcxlAddress.parse(V1["address"]))
    now = time.time()
    await dht.service.node.store(
        {
            "key": UcxlAddress.parse(address).key().hex(),
            "address": address,
            "sealed": V1["sealed"],
            "version": time.time_ns(),
            "stored_at": now,
            "expires_at": now + 3600,
            "deleted": False,
        }
    )
    expected = {"decision": "written before HPKE"}
    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        before = await reader.record(address)
        assert upgrade_needed(before) and "v" not in before["sealed"]
        assert await reader.get(address, "architect", keys["architect"]) == expected
        assert await reader.get(address, "ops", keys["ops"]) == expected

    async with UcxlClient(dht.url, ADMIN_TOKEN) as holder:
        assert await holder.upgrade(address, "architect", keys["architect"]) is True
        after = await holder.record(address)
        assert after["sealed"]["v"] == 2 and not upgrade_needed(after)
        assert after["version"] > before["version"] and after["roles"] == ["architect", "ops"]
        assert after["expires_at"] <= before["expires_at"] + 1  # the time it had left, no more
        # every role still opens it, including the one whose key did the upgrade's work
        assert await holder.get(address, "ops", keys["ops"]) == expected
        assert await holder.get(address, "architect", keys["architect"]) == expected
        assert await holder.upgrade(address, "architect", keys["architect"]) is False
    assert not any(dht.received(k.private_text) for k in keys.values())


async def test_a_record_relabelled_to_another_address_does_not_open(dht: SealedDht) -> None:
    """A node that copies one address's sealed value under another serves nothing readable."""
    arch = RoleKeyPair.generate()
    await dht.register({"architect": arch})
    async with UcxlClient(dht.url, ADMIN_TOKEN) as client:
        await client.put(ADDRESS, {"for": "plan.json"}, ["architect"])
        sealed = (await client.record(ADDRESS))["sealed"]
        other = "ucxl://gpt4:architect@chorus:e2e/*^/decisions/other.json"
        now = time.time()
        await dht.service.node.store(
            {
                "key": UcxlAddress.parse(other).key().hex(),
                "address": other,
                "sealed": sealed,
                "version": time.time_ns(),
                "stored_at": now,
                "expires_at": now + 3600,
                "deleted": False,
            }
        )
        with pytest.raises(ForbiddenError, match="altered"):
            await client.get(other, "architect", arch)


async def chorus(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the real `chorus` command (the in-process DHT keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "chorus"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_reads_and_upgrades_with_the_key_kept_local(
    dht: SealedDht, tmp_path: Path
) -> None:
    keys = {role: RoleKeyPair.from_private(text) for role, text in V1["keys"].items()}
    await dht.register(keys)
    address = str(UcxlAddress.parse(V1["address"]))
    now = time.time()
    await dht.service.node.store(
        {
            "key": UcxlAddress.parse(address).key().hex(),
            "address": address,
            "sealed": V1["sealed"],
            "version": time.time_ns(),
            "stored_at": now,
            "expires_at": now + 3600,
            "deleted": False,
        }
    )
    key_file = tmp_path / "ops.key"
    key_file.write_text(V1["keys"]["ops"] + "\n")
    target = ["--url", dht.url]

    code, out, err = await chorus(
        "ucxl", "get", address, "--role", "ops", "--key-file", str(key_file), *target,
        env={"CHORUS_TOKEN": READ_TOKEN},
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"decision": "written before HPKE"}

    # a read token cannot rewrite; an admin token held with a role key can
    code, out, err = await chorus(
        "ucxl", "upgrade", "ucxl://gpt4:architect@chorus:legacy/", "--role", "ops",
        "--key-file", str(key_file), *target, env={"CHORUS_TOKEN": READ_TOKEN},
    )  # fmt: skip
    assert code == 1 and "403" in err and "upgraded 0" in out
    code, out, err = await chorus(
        "ucxl", "upgrade", "ucxl://gpt4:architect@chorus:legacy/", "--role", "ops",
        *target, env={"CHORUS_TOKEN": ADMIN_TOKEN, "CHORUS_ROLE_KEY": V1["keys"]["ops"]},
    )  # fmt: skip
    assert code == 0 and "upgraded 1, already current 0" in out, out + err
    async with UcxlClient(dht.url, READ_TOKEN) as reader:
        after = await reader.record(address)
        assert after["sealed"]["v"] == 2
        assert await reader.get(address, "architect", keys["architect"]) == {
            "decision": "written before HPKE"
        }
    assert not any(dht.received(k.private_text) for k in keys.values())
