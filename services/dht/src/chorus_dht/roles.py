"""Role public keys: the X25519 keys values for a role are sealed to, in the registry bucket."""

from __future__ import annotations

import json

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from chorus_common.errors import NotFoundError, RequestInvalidError

__all__ = ["RoleKeys"]


class RoleKeys:
    """``role.<name>`` entries of the registry KV bucket (``{"public_key": …}``)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def public_key(self, role: str) -> str:
        """The key registered for ``role``; 404 when there is none."""
        try:
            entry = await self.kv.get(f"role.{role}")
        except KeyNotFoundError:
            raise NotFoundError(
                f"no key is registered for role {role!r}: register it with "
                f"POST /v1/roles/{role}/keys"
            ) from None
        public_key: str = json.loads(entry.value or b"{}")["public_key"]
        return public_key

    async def for_sealing(self, roles: list[str]) -> dict[str, str]:
        """The keys of ``roles``, for a value sealed here; 422 naming a role without one."""
        out = {}
        for role in roles:
            try:
                entry = await self.kv.get(f"role.{role}")
            except KeyNotFoundError:
                raise RequestInvalidError(
                    f"unknown role {role!r}: register its key with POST /v1/roles/{role}/keys"
                ) from None
            out[role] = json.loads(entry.value or b"{}")["public_key"]
        return out

    async def register(self, role: str, public_key: str) -> None:
        await self.kv.put(f"role.{role}", json.dumps({"public_key": public_key}).encode())
