"""Role public keys: the X25519 keys values for a role are sealed to, in the registry bucket."""

from __future__ import annotations

from pydantic import BaseModel

from chorus_common.bus import Bucket, Bus
from chorus_common.errors import NotFoundError, RequestInvalidError
from chorus_common.topology import BUCKET_REGISTRY

__all__ = ["ROLE_PREFIX", "RoleKeyDocument", "RoleKeys"]

#: where role keys live in the registry bucket: ``role.<name>``
ROLE_PREFIX = "role."


class RoleKeyDocument(BaseModel):
    """``role.<name>`` in the registry bucket."""

    public_key: str


class RoleKeys:
    """``role.<name>`` entries of the registry KV bucket (``{"public_key": …}``)."""

    def __init__(self, bucket: Bucket[RoleKeyDocument]) -> None:
        self.bucket = bucket

    @classmethod
    def open(cls, bus: Bus) -> RoleKeys:
        return cls(bus.bucket(BUCKET_REGISTRY, RoleKeyDocument, prefix=ROLE_PREFIX))

    async def public_key(self, role: str) -> str:
        """The key registered for ``role``; 404 when there is none."""
        entry = await self.bucket.get(role)
        if entry is None:
            raise NotFoundError(
                f"no key is registered for role {role!r}: register it with "
                f"POST /v1/roles/{role}/keys"
            )
        return entry.value.public_key

    async def for_sealing(self, roles: list[str]) -> dict[str, str]:
        """The keys of ``roles``, for a value sealed here; 422 naming a role without one."""
        out = {}
        for role in roles:
            entry = await self.bucket.get(role)
            if entry is None:
                raise RequestInvalidError(
                    f"unknown role {role!r}: register its key with POST /v1/roles/{role}/keys"
                )
            out[role] = entry.value.public_key
        return out

    async def register(self, role: str, public_key: str) -> None:
        await self.bucket.put(role, RoleKeyDocument(public_key=public_key))
