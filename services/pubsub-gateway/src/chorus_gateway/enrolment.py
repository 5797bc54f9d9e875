"""Enrolment: an agent earns its own token by proving it holds its key.

1. An admin makes a one-time enrolment token (``POST /v1/enrolment-tokens``);
   ``chorus up`` prints one.
2. The agent asks for a challenge (``POST /v1/enrolments/challenge``, with the
   enrolment token or the admin token) naming its id and Ed25519 public key.
3. It signs :func:`challenge_message` and sends the signature
   (``POST /v1/enrolments``). The gateway checks the signature, uses up the
   challenge and the enrolment token (a KV delete at the revision it read, so
   two replicas racing with one token cannot both succeed), registers the key
   and answers a token with the ``read`` and ``publish`` scopes bound to that
   agent.

A key is changed only by rotation: a signature by the old key over
:func:`rotation_message`, with the agent's own token, or an admin's explicit
``rotate: true``. Every enrolment, registration, rotation and revocation is an
audit event on ``chorus.audit.<action>`` (stream ``CHORUS_AUDIT``).

Only the SHA-256 of a token is stored (``identity.<digest>``); challenges and
enrolment tokens live under ``challenge.<nonce>`` and ``enrolment.<digest>`` in
the registry bucket, each with its expiry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from chorus_common.bus import Bucket, Bus
from chorus_common.dependencies import Provided, Requires
from chorus_common.errors import AuthError, ConflictError, ForbiddenError, NotFoundError
from chorus_common.identity import (
    Identity,
    Scope,
    TokenBook,
    token_digest,
)
from chorus_common.registry import AgentDirectory, check_public_key
from chorus_common.service import problem_responses
from chorus_common.signing import verify_signature
from chorus_common.topology import AUDIT_SUBJECT_PREFIX, BUCKET_REGISTRY
from chorus_gateway.documents import Challenge, Enrolled, EnrolmentToken, KeyChange, Revoked

__all__ = [
    "AGENT_SCOPES",
    "Enrolment",
    "challenge_message",
    "rotation_message",
    "router",
]

log = logging.getLogger("chorus.gateway.enrolment")

AGENT_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
AgentId = PathParam(
    pattern=AGENT_PATTERN, description="letters, digits, '_' and '-'", examples=["agent-1"]
)
#: how long a challenge may be answered
CHALLENGE_SECONDS = 300.0
#: the scopes an enrolled agent's token carries
AGENT_SCOPES = frozenset({Scope.READ, Scope.PUBLISH})


def challenge_message(agent: str, public_key: str, challenge: str) -> bytes:
    """What an agent signs to prove it holds the private half of ``public_key``."""
    return f"chorus-enrol\n{agent}\n{public_key}\n{challenge}".encode()


def rotation_message(agent: str, new_public_key: str) -> bytes:
    """What the old key signs to hand the agent's feed over to ``new_public_key``."""
    return f"chorus-rotate\n{agent}\n{new_public_key}".encode()


class EnrolmentTokenRequest(BaseModel):
    ttl_seconds: float = Field(
        default=24 * 3600.0, ge=60, le=30 * 24 * 3600.0, description="how long it may be used"
    )


class ChallengeRequest(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {"agent": "agent-1", "public_key": "IPsJWfMiQUuMyOKYpYwUvLRN26NXp57XYArZPU_EVlk"}
            ]
        }
    }
    agent: str = Field(pattern=AGENT_PATTERN)
    public_key: str = Field(min_length=40, max_length=64, description="Ed25519, URL-safe base64")


class EnrolmentRequest(ChallengeRequest):
    challenge: str = Field(min_length=16, max_length=128)
    signature: str = Field(
        min_length=40, max_length=128, description="over challenge_message(), URL-safe base64"
    )


class KeyRegistration(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"public_key": "IPsJWfMiQUuMyOKYpYwUvLRN26NXp57XYArZPU_EVlk"}]
        }
    }

    public_key: str = Field(min_length=40, max_length=64, description="Ed25519, URL-safe base64")
    signature: str | None = Field(
        default=None,
        max_length=128,
        description="the old key's signature over rotation_message(); needed to rotate "
        "without the admin scope",
    )
    rotate: bool = Field(
        default=False, description="admin only: replace an existing, different key"
    )


class ChallengeRecord(BaseModel):
    """``challenge.<nonce>``: what the nonce was issued for, until when."""

    agent: str
    public_key: str
    expires_at: float


class EnrolmentTokenRecord(BaseModel):
    """``enrolment.<sha256 of the token>``: a one-time token, until when, by whom."""

    expires_at: float
    created_by: str = ""


class IdentityRecord(BaseModel):
    """``identity.<sha256 of the token>``: who an enrolled token speaks for
    (chorus_common.identity.TokenBook reads it)."""

    kind: str
    name: str
    scopes: list[str]
    created_at: float


class Enrolment:
    """The KV side of enrolment, shared by every gateway replica through the registry."""

    def __init__(
        self, bus: Bus, tokens: TokenBook, directory: AgentDirectory, node_id: str
    ) -> None:
        self.bus, self.tokens, self.directory, self.node_id = bus, tokens, directory, node_id
        self.challenges = bus.bucket(BUCKET_REGISTRY, ChallengeRecord, prefix="challenge.")
        self.enrolment_tokens = bus.bucket(
            BUCKET_REGISTRY, EnrolmentTokenRecord, prefix="enrolment."
        )
        self.identities = bus.bucket(BUCKET_REGISTRY, IdentityRecord, prefix="identity.")

    @staticmethod
    async def _use_up(bucket: Bucket[Any], key: str, revision: int, what: str) -> None:
        """Delete ``key`` only if nobody else did since ``revision``: one use, ever."""
        try:
            await bucket.delete(key, revision)
        except ConflictError:
            raise AuthError(f"this {what} was used already") from None

    async def audit(self, action: str, **fields: Any) -> None:
        """One audit event; a lost audit event is logged, never silently dropped."""
        doc = {"action": action, "at": time.time(), "gateway": self.node_id}
        doc.update(fields)
        try:
            await self.bus.record(f"{AUDIT_SUBJECT_PREFIX}.{action}", json.dumps(doc).encode())
        except Exception as exc:
            log.error("audit event %s not stored: %s (%s)", action, exc, doc)

    async def make_enrolment_token(self, ttl: float, by: Identity) -> EnrolmentToken:
        token = "enr_" + secrets.token_urlsafe(32)
        expires = time.time() + ttl
        record = EnrolmentTokenRecord(expires_at=expires, created_by=by.name)
        await self.enrolment_tokens.create(token_digest(token), record)
        await self.audit("enrolment_token_created", by=by.name, expires_at=expires)
        return EnrolmentToken(token=token, expires_at=expires)

    async def enrolment_token(self, token: str) -> tuple[str, int] | None:
        """The key and revision of a live enrolment token, or None."""
        key = token_digest(token)
        found = await self.enrolment_tokens.get(key)
        if found is None or found.value.expires_at < time.time():
            return None
        return key, found.revision

    async def caller(self, request: Request) -> tuple[Identity | None, tuple[str, int] | None]:
        """An admin identity, or a live enrolment token; 401 for anything else."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                "enrolment needs 'Authorization: Bearer <enrolment token or admin token>'"
            )
        identity = await self.tokens.resolve(token)
        if identity is not None and identity.allows(Scope.ADMIN):
            return identity, None
        live = await self.enrolment_token(token)
        if live is None:
            raise AuthError("the enrolment token is not valid (unknown, expired or used)")
        return None, live

    async def challenge(self, agent: str, public_key: str) -> Challenge:
        check_public_key(public_key)
        nonce = secrets.token_urlsafe(24)
        expires = time.time() + CHALLENGE_SECONDS
        record = ChallengeRecord(agent=agent, public_key=public_key, expires_at=expires)
        await self.challenges.create(nonce, record)
        return Challenge(
            challenge=nonce,
            expires_at=expires,
            sign="chorus-enrol\\n<agent>\\n<public_key>\\n<challenge>",
        )

    async def enrol(
        self, body: EnrolmentRequest, admin: Identity | None, enrolment: tuple[str, int] | None
    ) -> Enrolled:
        check_public_key(body.public_key)
        found = await self.challenges.get(body.challenge)
        if found is None:
            raise AuthError("unknown or used challenge: ask for a new one")
        doc, revision = found.value, found.revision
        if doc.expires_at < time.time():
            raise AuthError("the challenge expired: ask for a new one")
        if doc.agent != body.agent or doc.public_key != body.public_key:
            raise AuthError("the challenge was issued for another agent or key")
        message = challenge_message(body.agent, body.public_key, body.challenge)
        if not verify_signature(body.public_key, message, body.signature):
            raise AuthError("the signature does not verify with public_key: no proof of the key")
        directory = self.directory
        current = await directory.get(body.agent)
        if current and current.get("public_key") not in (None, body.public_key):
            raise ConflictError(
                f"agent {body.agent!r} has another key; rotate it "
                "(POST /v1/agents/{agent}/keys with the old key's signature)",
                reason="key_exists",
            )
        await self._use_up(self.challenges, body.challenge, revision, "challenge")
        if enrolment is not None:
            await self._use_up(self.enrolment_tokens, *enrolment, "enrolment token")
        token = "agt_" + secrets.token_urlsafe(32)
        identity = Identity("agent", body.agent, AGENT_SCOPES)
        digest = token_digest(token)
        record = IdentityRecord.model_validate({**identity.as_dict(), "created_at": time.time()})
        await self.identities.create(digest, record)
        tokens = [*(current or {}).get("tokens", []), digest]
        await directory.update(body.agent, public_key=body.public_key, tokens=tokens)
        await self.audit(
            "agent_enrolled",
            agent=body.agent,
            public_key=body.public_key,
            approved_by=admin.name if admin is not None else "enrolment token",
        )
        return Enrolled(agent=body.agent, token=token, scopes=sorted(AGENT_SCOPES))

    async def register_key(self, agent: str, body: KeyRegistration, caller: Identity) -> KeyChange:
        """Register a first key (admin), or rotate: old key's signature, or admin ``rotate``."""
        check_public_key(body.public_key)
        directory = self.directory
        current = await directory.get(agent)
        old = current.get("public_key") if current else None
        admin = caller.allows(Scope.ADMIN)
        if old == body.public_key:
            return KeyChange(agent=agent, public_key=old, changed=False)
        if old is None:
            if not admin:
                raise ForbiddenError(
                    "registering a first key needs the admin scope, or enrolment",
                    reason="scope_missing",
                    scope="admin",
                )
            action = "key_registered"
        elif body.signature is not None:
            if not admin and (caller.kind != "agent" or caller.name != agent):
                raise ForbiddenError(
                    f"only agent {agent!r} itself or an admin may rotate its key",
                    reason="not_your_agent",
                )
            if not verify_signature(old, rotation_message(agent, body.public_key), body.signature):
                raise ForbiddenError(
                    "the signature is not the old key's over rotation_message()",
                    reason="bad_rotation_signature",
                )
            action = "key_rotated"
        elif admin and body.rotate:
            action = "key_rotated_by_admin"
        else:
            raise ConflictError(
                f"agent {agent!r} has another key: rotating needs the old key's signature "
                "over rotation_message(), or an admin's rotate: true",
                reason="key_exists",
            )
        await directory.update(agent, public_key=body.public_key)
        directory.forget(agent)
        await self.audit(action, agent=agent, by=caller.name, old_key=old, new_key=body.public_key)
        return KeyChange(agent=agent, public_key=body.public_key, changed=True)

    async def revoke(self, agent: str, by: Identity) -> Revoked:
        """End every token enrolled for ``agent`` (each replica's cache within seconds)."""
        directory = self.directory
        doc = await directory.get(agent) or {}
        digests: list[str] = list(doc.get("tokens", []))
        for digest in digests:
            with contextlib.suppress(NotFoundError):
                await self.identities.delete(digest)
            self.tokens.forget(digest)
        if doc:
            await directory.update(agent, tokens=[])
        await self.audit("tokens_revoked", agent=agent, by=by.name, count=len(digests))
        return Revoked(agent=agent, revoked=len(digests))


router = APIRouter(tags=["agents"])
EnrolmentDesk = Annotated[Enrolment, Provided(Enrolment)]


@router.post("/v1/enrolment-tokens", status_code=201, responses=problem_responses(503))
async def new_enrolment_token(
    body: EnrolmentTokenRequest,
    enrolment: EnrolmentDesk,
    caller: Annotated[Identity, Requires(Scope.ADMIN)],
) -> EnrolmentToken:
    """A one-time token an agent enrols with (it proves its key, and gets its own token)."""
    return await enrolment.make_enrolment_token(body.ttl_seconds, caller)


@router.post(
    "/v1/enrolments/challenge",
    status_code=201,
    responses=problem_responses(401, 503),
    openapi_extra={"x-chorus-scope": "enrolment", "security": [{"bearer": []}]},
)
async def challenge(
    body: ChallengeRequest, request: Request, enrolment: EnrolmentDesk
) -> Challenge:
    """A challenge to sign with the agent's key (Bearer: an enrolment or admin token)."""
    await enrolment.caller(request)
    return await enrolment.challenge(body.agent, body.public_key)


@router.post(
    "/v1/enrolments",
    status_code=201,
    responses=problem_responses(401, 409, 503),
    openapi_extra={"x-chorus-scope": "enrolment", "security": [{"bearer": []}]},
)
async def enrol(body: EnrolmentRequest, request: Request, enrolment: EnrolmentDesk) -> Enrolled:
    """Prove the key (signed challenge); uses up the enrolment token; answers the agent's token."""
    who, token = await enrolment.caller(request)
    return await enrolment.enrol(body, who, token)


@router.post("/v1/agents/{agent}/keys", status_code=201, responses=problem_responses(409, 503))
async def register_key(
    body: KeyRegistration,
    enrolment: EnrolmentDesk,
    caller: Annotated[Identity, Requires(Scope.PUBLISH)],
    agent: str = AgentId,
) -> KeyChange:
    """Register an agent's first key (admin), or rotate it with the old key's signature."""
    return await enrolment.register_key(agent, body, caller)


@router.delete("/v1/agents/{agent}/tokens", responses=problem_responses(503))
async def revoke(
    enrolment: EnrolmentDesk,
    caller: Annotated[Identity, Requires(Scope.ADMIN)],
    agent: str = AgentId,
) -> Revoked:
    """Revoke every enrolled token of the agent."""
    return await enrolment.revoke(agent, caller)
