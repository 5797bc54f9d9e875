"""Who is calling, and what they may do: bearer tokens that carry an identity and scopes.

Three scopes cover every REST operation: ``read`` (GET routes, SSE, WebSocket),
``publish`` (envelopes into the gateway) and ``admin`` (everything that changes
state, and every other scope). A token stands for one identity — an operator,
a person, an agent or a service — and its scopes.

Tokens come from two places. Configured ones (``CHORUS_ADMIN_TOKEN``,
``CHORUS_READ_TOKENS``, and a service's own, like the gateway's publish tokens)
are known at start. Enrolled ones (an agent that proved possession of its key,
see the gateway's enrolment routes) are stored in the registry bucket as
``identity.<sha256 of the token>``: only the digest is ever stored, so reading
the bucket yields no usable token. Every service resolves enrolled tokens from
there, with a short cache, so a revocation reaches every replica within
:data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

__all__ = [
    "Identity",
    "IdentityKind",
    "Scope",
    "TokenBook",
    "identity_key",
    "split_tokens",
    "token_digest",
]

#: how long a resolved enrolled token is trusted before it is looked up again
CACHE_SECONDS = 5.0
#: unknown tokens are remembered briefly too, so a flood of bad tokens costs no KV reads
NEGATIVE_CACHE_SECONDS = 1.0
#: at most this many resolved tokens are cached (least recently used go first)
CACHE_SIZE = 4096

IdentityKind = Literal["operator", "person", "agent", "service"]


class Scope(StrEnum):
    READ = "read"
    PUBLISH = "publish"
    ADMIN = "admin"


@dataclass(frozen=True)
class Identity:
    kind: IdentityKind
    name: str
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    def allows(self, scope: Scope) -> bool:
        """Admin implies every scope; the others are granted one by one."""
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "scopes": sorted(self.scopes)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Identity:
        return cls(
            kind=doc["kind"],
            name=str(doc["name"]),
            scopes=frozenset(Scope(s) for s in doc.get("scopes", ())),
        )


def token_digest(token: str) -> str:
    """The key an enrolled token is stored under: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def identity_key(digest: str) -> str:
    return f"identity.{digest}"


def split_tokens(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


class TokenBook:
    """Resolves a bearer token to an :class:`Identity`, or None for an unknown token."""

    def __init__(self) -> None:
        self._static: list[tuple[bytes, Identity]] = []
        self.kv: KeyValue | None = None
        self._cache: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()

    def add(self, tokens: Iterable[str], identity: Identity) -> None:
        """Configured tokens; a token given twice keeps the scopes of both."""
        for token in tokens:
            for i, (known, ident) in enumerate(self._static):
                if hmac.compare_digest(known, token.encode()):
                    merged = Identity(ident.kind, ident.name, ident.scopes | identity.scopes)
                    self._static[i] = (known, merged)
                    break
            else:
                self._static.append((token.encode(), identity))

    @property
    def configured(self) -> bool:
        """Whether any token can be valid here (else a protected route cannot be reached)."""
        return bool(self._static) or self.kv is not None

    def forget(self, digest: str) -> None:
        """Drop a cached enrolled token at once (this replica revoked it)."""
        self._cache.pop(digest, None)

    async def resolve(self, token: str) -> Identity | None:
        given = token.encode()
        found: Identity | None = None
        # compare against every configured token, so timing says nothing about which matched
        for known, identity in self._static:
            if hmac.compare_digest(known, given):
                found = identity
        if found is not None or self.kv is None:
            return found
        return await self._enrolled(token_digest(token))

    async def _enrolled(self, digest: str) -> Identity | None:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None:
            at, identity = cached
            if now - at < (CACHE_SECONDS if identity is not None else NEGATIVE_CACHE_SECONDS):
                self._cache.move_to_end(digest)
                return identity
        assert self.kv is not None
        identity = None
        try:
            entry = await self.kv.get(identity_key(digest))
        except KeyNotFoundError:
            pass
        else:
            if entry.value:
                doc = json.loads(entry.value)
                if not doc.get("revoked"):
                    identity = Identity.from_dict(doc)
        self._cache[digest] = (now, identity)
        self._cache.move_to_end(digest)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return identity
