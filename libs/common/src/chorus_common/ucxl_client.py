"""UCXL values over a DHT node's REST API, sealed and opened where the role key is.

A DHT node serves sealed records only; this client fetches one with a read
token and opens it locally with the caller's role key, so a role's private key
never leaves the process that holds it (the SDK, HAP, ``chorus ucxl``). Writes
are sealed here too, to the roles' public keys the node serves
(``GET /v1/roles/{role}/keys``), so a node never sees a value on the way in either.
Records sealed before HPKE (format version 1) open too; :meth:`UcxlClient.upgrade`
writes such a record again in the current format.
"""

from __future__ import annotations

import json
import secrets
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
from chorus_common.sealed import RoleKeyPair, SealedValue, open_sealed, seal, upgrade_needed
from chorus_common.ucxl import UcxlAddress, decision_address

__all__ = ["UcxlClient", "open_record"]

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
    """Read and write UCXL values through one DHT node; values are sealed and opened here,
    never there.

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

    async def role_keys(self, roles: list[str]) -> dict[str, str]:
        """The public keys registered for ``roles`` (role -> X25519, URL-safe base64)."""
        keys: dict[str, str] = {}
        for role in roles:
            doc = await self._call("GET", f"/v1/roles/{quote(role, safe='')}/keys")
            keys[role] = doc["public_key"]
        return keys

    async def seal(self, address: str, value: Any, roles: list[str]) -> SealedValue:
        """``value`` sealed here to ``roles``, bound to ``address`` as readers will name it
        (its canonical form, which is also what the node stores it under)."""
        canonical = str(UcxlAddress.parse(address))
        recipients = await self.role_keys(roles)
        return seal(json.dumps(value).encode(), recipients, aad=canonical.encode())

    async def put(
        self,
        address: str,
        value: Any,
        roles: list[str],
        ttl_seconds: float | None = None,
        w: int | None = None,
    ) -> dict[str, Any]:
        """Store ``value`` sealed here to ``roles``; the node gets ciphertext only.

        ``w`` asks for that many copies before the write is acknowledged (the node's W
        otherwise); fewer reachable is :class:`UnavailableError` (the node's 503).
        """
        sealed = await self.seal(address, value, roles)
        body: dict[str, Any] = {"sealed": sealed.model_dump(), "roles": roles}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        result: dict[str, Any] = await self._call(
            "PUT",
            f"/v1/ucxl/{quote(address, safe='')}",
            json=body,
            params={"w": w} if w is not None else None,
        )
        return result

    async def publish_decision(
        self,
        *,
        decision: str,
        author: str,
        project: str,
        roles: list[str],
        role: str = "any",
        task: str = "any",
        rationale: str = "",
        related: list[str] | None = None,
        w: int | None = None,
    ) -> dict[str, Any]:
        """Publish a decision record through the DHT's DecisionPublisher, sealed here.

        The record has the fields the node used to write for a plaintext decision
        (``decision``, ``rationale``, ``author``, ``role``, ``project``, ``task``,
        ``related``, ``decision_id``, ``at``), so readers open both alike. The answer
        names the ``address`` it is stored at.
        """
        decision_id = secrets.token_hex(6)
        address = decision_address(author, role, project, task, decision_id)
        record = {
            "decision": decision,
            "rationale": rationale,
            "author": author,
            "role": role,
            "project": project,
            "task": task,
            "related": related or [],
            "decision_id": decision_id,
            "at": time.time(),
        }
        sealed = await self.seal(address, record, roles)
        body = {
            "decision_id": decision_id,
            "author": author,
            "role": role,
            "project": project,
            "task": task,
            "sealed": sealed.model_dump(),
            "roles": roles,
        }
        result: dict[str, Any] = await self._call(
            "POST", "/v1/decisions", json=body, params={"w": w} if w is not None else None
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
