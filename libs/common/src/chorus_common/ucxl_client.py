"""UCXL values over a DHT node's REST API, opened where the role key is.

A DHT node serves sealed records only; this client fetches one with a read
token and opens it locally with the caller's role key, so a role's private key
never leaves the process that holds it (the SDK, HAP, ``chorus ucxl``).
Records sealed before HPKE (format version 1) open too; :meth:`UcxlClient.upgrade`
writes such a record again in the current format.
"""

from __future__ import annotations

import json
import time
from typing import Any, Self
from urllib.parse import quote

import httpx

from chorus_common.errors import (
    AuthError,
    ChorusError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RequestInvalidError,
    UnavailableError,
)
from chorus_common.sealed import RoleKeyPair, open_sealed, upgrade_needed
from chorus_common.ucxl import UcxlAddress

_BY_STATUS: dict[int, type[ChorusError]] = {
    400: RequestInvalidError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestInvalidError,
    422: RequestInvalidError,
}


def open_record(record: dict[str, Any], address: str, role: str, key: RoleKeyPair) -> Any:
    """The JSON value of a sealed DHT record, opened as ``role``.

    ``address`` is the address the caller asked for, not the one the record
    names: the sealed value is bound to it, so a node that answers with another
    record (or relabels one) makes the open fail instead of returning a value for
    the wrong address.
    """
    wanted = str(UcxlAddress.parse(address))
    if record.get("address") != wanted:
        raise ForbiddenError(
            f"the DHT answered a record for {record.get('address')!r} when {wanted!r} was asked for"
        )
    if record.get("sealed") is None:
        raise NotFoundError(f"{wanted} holds no sealed value (deleted?)")
    return json.loads(open_sealed(record["sealed"], role, key, aad=wanted.encode()))


class UcxlClient:
    """Read (and write) UCXL values through one DHT node; values are opened here, never there.

    ``token`` is a bearer token with the read scope (admin for :meth:`put` and
    :meth:`upgrade`); ``http`` lets a caller share its connection pool.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self.http.request(
                method, f"{self.base_url}{path}", headers=self.headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise UnavailableError(f"the DHT at {self.base_url} does not answer: {exc}") from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            error = _BY_STATUS.get(resp.status_code, UnavailableError)
            raise error(f"the DHT answered {resp.status_code}: {detail}")
        return resp.json()

    async def record(self, address: str) -> dict[str, Any]:
        """The sealed record at ``address`` as the DHT serves it (ciphertext, roles, version)."""
        record: dict[str, Any] = await self._call("GET", f"/v1/ucxl/{quote(address, safe='')}")
        return record

    async def get(self, address: str, role: str, key: RoleKeyPair) -> Any:
        """The value at ``address``, opened here with ``role``'s private key."""
        return open_record(await self.record(address), address, role, key)

    async def addresses(self, prefix: str) -> list[dict[str, Any]]:
        """Addresses under ``prefix`` with their versions and roles (no values)."""
        doc = await self._call("GET", "/v1/ucxl", params={"prefix": prefix})
        items: list[dict[str, Any]] = doc["items"]
        return items

    async def put(
        self, address: str, value: Any, roles: list[str], ttl_seconds: float | None = None
    ) -> dict[str, Any]:
        """Store ``value`` sealed to ``roles`` (the node seals it to the roles' public keys)."""
        body: dict[str, Any] = {"value": value, "roles": roles}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        result: dict[str, Any] = await self._call(
            "PUT", f"/v1/ucxl/{quote(address, safe='')}", json=body
        )
        return result

    async def upgrade(self, address: str, role: str, key: RoleKeyPair) -> bool:
        """Write a record sealed in an older format again in the current one; True if it was.

        Storage nodes cannot do this (they hold no role key and so never see the
        content key); a holder of any one of the record's roles can, because
        sealing needs only the roles' public keys. The value is written again
        for the same roles with the time it had left. The record is read a second
        time just before the write and left alone if its version moved meanwhile,
        so an upgrade does not undo a newer write it raced with (a write landing
        in between that second read and the put still can: run upgrades while the
        addresses are quiet).
        """
        record = await self.record(address)
        if not upgrade_needed(record):
            return False
        value = open_record(record, address, role, key)
        expires = record.get("expires_at")
        ttl = max(1.0, expires - time.time()) if isinstance(expires, int | float) else None
        again = await self.record(address)
        if again.get("version") != record.get("version"):
            return False
        await self.put(address, value, list(record["roles"]), ttl)
        return True
