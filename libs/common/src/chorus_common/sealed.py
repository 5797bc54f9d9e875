"""Role-sealed values: content under a random content key, that key sealed to each role with HPKE.

A value is encrypted once with ChaCha20-Poly1305 under a fresh content key; the
content key is then sealed to every recipient role's X25519 public key with
standard HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305) from ``cryptography``. The HPKE ``info`` names the format,
the role, the record's binding (the DHT passes the UCXL address) and a digest of
the content ciphertext, so a sealed key opens nothing when it is moved to
another role, another address or another value.

Only a holder of a role private key can open a value, and that happens where
the key lives: in the SDK (:mod:`chorus_common.ucxl_client`), HAP or the CLI.
Storage nodes see ciphertext and public keys only, so they can neither read a
value nor re-seal one. Values sealed by the format before HPKE (version 1:
X25519 + HKDF key wrapping, no ``v`` field) still open; :func:`upgrade_needed`
tells a key holder to write such a value again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pydantic import BaseModel, ValidationError

from chorus_common.errors import ForbiddenError, OversizeError, RequestInvalidError
from chorus_common.signing import b64decode, b64encode

__all__ = [
    "ALG",
    "AnySealed",
    "LegacySealedValue",
    "RoleKeyPair",
    "SealedValue",
    "check_shape",
    "open_sealed",
    "parse_sealed",
    "seal",
    "upgrade_needed",
]

#: the current format: its version and the HPKE suite (KEM-KDF-AEAD) that seals content keys
VERSION: Final = 2
ALG: Final = "hpke-x25519-sha256-chacha20poly1305"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
#: sizes a v2 value has whatever its content: the nonce, the AEAD tag the ciphertext adds,
#: and a sealed content key (HPKE ``enc``, an X25519 public key, then the 32-byte key and its tag)
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
WRAPPED_BYTES: Final = 32 + 32 + TAG_BYTES


class SealedValue(BaseModel):
    """What nodes store (version 2): ciphertext and one HPKE-sealed content key per role."""

    v: Literal[2] = VERSION
    alg: Literal["hpke-x25519-sha256-chacha20poly1305"] = ALG
    ciphertext: str
    nonce: str
    #: role -> HPKE ``enc || ciphertext`` of the content key, URL-safe base64
    wrapped: dict[str, str]


class LegacySealedValue(BaseModel):
    """Version 1 (before HPKE, no ``v`` field): read so that older records stay readable."""

    ciphertext: str
    nonce: str
    wrapped: dict[str, dict[str, str]]  # role -> {epk, nonce, key}


AnySealed = SealedValue | LegacySealedValue


@dataclass(frozen=True)
class RoleKeyPair:
    """A role's X25519 key pair; the private half stays with whoever holds the role."""

    private: X25519PrivateKey

    @classmethod
    def generate(cls) -> RoleKeyPair:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private(cls, text: str) -> RoleKeyPair:
        try:
            return cls(X25519PrivateKey.from_private_bytes(b64decode(text)))
        except ValueError:
            raise RequestInvalidError("a role private key is 32 bytes of URL-safe base64") from None

    @property
    def private_text(self) -> str:
        return b64encode(
            self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        )

    @property
    def public_text(self) -> str:
        return b64encode(self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_sealed(doc: AnySealed | Mapping[str, Any]) -> AnySealed:
    """The sealed value in ``doc`` (as stored in a record), in whichever format it was written.

    A document with ``v`` is the current format (an unknown version is refused
    by name, so a newer writer is noticed rather than misread); one without is
    version 1.
    """
    if isinstance(doc, SealedValue | LegacySealedValue):
        return doc
    if not isinstance(doc, Mapping):
        raise RequestInvalidError(f"a sealed value is a JSON object, not {type(doc).__name__}")
    try:
        if "v" in doc:
            if doc["v"] != VERSION or doc.get("alg") != ALG:
                raise RequestInvalidError(
                    f"sealed format v={doc['v']!r} alg={doc.get('alg')!r} is not known here "
                    f"(this reader opens v=1 and v={VERSION} {ALG}); upgrade chorus_common"
                )
            return SealedValue.model_validate(doc)
        return LegacySealedValue.model_validate(doc)
    except ValidationError as exc:
        raise RequestInvalidError(
            f"the sealed value is malformed: {exc.errors()[0]['msg']}"
        ) from None


def check_shape(sealed: SealedValue, roles: Collection[str], max_plaintext: int) -> None:
    """Refuse a v2 value a writer sealed itself unless its shape is right.

    This is all a storage node can check: the roles it claims are exactly the
    roles sealed to, every field is URL-safe base64 of the size the format gives
    it, and the content is no longer than ``max_plaintext`` plus the AEAD tag.
    Whether the content key was really sealed to those roles' keys, and bound to
    the address it is stored at, only a role-key holder can tell: a mis-bound
    record is stored and then simply fails to open for its readers.
    """
    if set(sealed.wrapped) != set(roles):
        raise RequestInvalidError(
            f"the value is sealed to roles {sorted(sealed.wrapped)} but the request names "
            f"{sorted(roles)}: they must be the same",
            reason="sealed_roles_mismatch",
        )
    try:
        nonce, ciphertext = b64decode(sealed.nonce), b64decode(sealed.ciphertext)
        wrapped = {role: b64decode(text) for role, text in sealed.wrapped.items()}
    except ValueError:
        raise RequestInvalidError(
            "the sealed value's nonce, ciphertext and sealed keys are URL-safe base64",
            reason="sealed_malformed",
        ) from None
    if len(nonce) != NONCE_BYTES:
        raise RequestInvalidError(
            f"the sealed value's nonce is {len(nonce)} bytes; it is {NONCE_BYTES}",
            reason="sealed_malformed",
        )
    if len(ciphertext) < TAG_BYTES:
        raise RequestInvalidError(
            f"the sealed value's ciphertext is {len(ciphertext)} bytes, shorter than its "
            f"{TAG_BYTES}-byte tag",
            reason="sealed_malformed",
        )
    bad = sorted(role for role, key in wrapped.items() if len(key) != WRAPPED_BYTES)
    if bad:
        raise RequestInvalidError(
            f"the sealed key of role(s) {bad} is not {WRAPPED_BYTES} bytes (HPKE enc and "
            "the sealed content key)",
            reason="sealed_malformed",
        )
    if len(ciphertext) - TAG_BYTES > max_plaintext:
        raise OversizeError(
            f"value is {len(ciphertext) - TAG_BYTES} bytes; the limit is {max_plaintext}"
        )


def upgrade_needed(doc: AnySealed | Mapping[str, Any]) -> bool:
    """True for a value in an older format, which a role-key holder should seal again.

    Accepts a sealed value or a whole DHT record (its ``sealed`` field); a
    tombstone or anything without a sealed value needs nothing.
    """
    if isinstance(doc, Mapping) and "sealed" in doc:
        doc = doc["sealed"]
    if doc is None:
        return False
    if isinstance(doc, Mapping):
        return "v" not in doc and "wrapped" in doc
    return isinstance(doc, LegacySealedValue)


def _content_aad(aad: bytes) -> bytes:
    # the format is bound into the content too: a v2 body cannot be relabelled as another one
    return ALG.encode() + b"\x00" + aad


def _key_info(role: str, aad: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """HPKE ``info`` for ``role``'s sealed content key: format, role, binding, content digest.

    The binding and the content enter as SHA-256 digests so that ``info`` stays a
    fixed, small size however long an address is.
    """
    return b"\x00".join(
        (
            f"chorus-sealed/v{VERSION}/{ALG}".encode(),
            role.encode(),
            hashlib.sha256(aad).digest(),
            hashlib.sha256(nonce + ciphertext).digest(),
        )
    )


def _public_key(role: str, public: str) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(b64decode(public))
    except ValueError:
        raise RequestInvalidError(
            f"the public key registered for role {role!r} is not X25519"
        ) from None


def seal(plaintext: bytes, recipients: Mapping[str, str], aad: bytes = b"") -> SealedValue:
    """Encrypt ``plaintext`` for every role in ``recipients`` (role -> X25519 public key).

    ``aad`` is what the value belongs to (the DHT passes the UCXL address): both
    the content and every sealed key are bound to it.
    """
    if not recipients:
        raise RequestInvalidError("a value must be sealed to at least one role")
    keys = {role: _public_key(role, public) for role, public in recipients.items()}
    content_key = ChaCha20Poly1305.generate_key()
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(content_key).encrypt(nonce, plaintext, _content_aad(aad))
    wrapped = {
        role: b64encode(
            SUITE.encrypt(content_key, key, info=_key_info(role, aad, nonce, ciphertext))
        )
        for role, key in keys.items()
    }
    return SealedValue(ciphertext=b64encode(ciphertext), nonce=b64encode(nonce), wrapped=wrapped)


def open_sealed(
    value: AnySealed | Mapping[str, Any], role: str, key: RoleKeyPair, aad: bytes = b""
) -> bytes:
    """Decrypt as ``role``; a role it was not sealed to, a wrong key or any tampering is refused.

    Both formats open: the current one, and version 1 for records written before it.
    """
    sealed = parse_sealed(value)
    if role not in sealed.wrapped:
        raise ForbiddenError(
            f"this value is not sealed to role {role!r} (roles: {sorted(sealed.wrapped)})"
        )
    try:
        if isinstance(sealed, SealedValue):
            return _open_v2(sealed, role, key, aad)
        return _open_v1(sealed, role, key, aad)
    except (InvalidTag, ValueError, KeyError):
        raise ForbiddenError(
            f"cannot open the value as role {role!r}: wrong role key, or the ciphertext, "
            "its sealed key or its address was altered"
        ) from None


def _open_v2(sealed: SealedValue, role: str, key: RoleKeyPair, aad: bytes) -> bytes:
    nonce, ciphertext = b64decode(sealed.nonce), b64decode(sealed.ciphertext)
    content_key = SUITE.decrypt(
        b64decode(sealed.wrapped[role]), key.private, info=_key_info(role, aad, nonce, ciphertext)
    )
    return ChaCha20Poly1305(content_key).decrypt(nonce, ciphertext, _content_aad(aad))


def _v1_wrap_key(shared: bytes, role: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"chorus-sealed:{role}".encode()
    ).derive(shared)


def _open_v1(sealed: LegacySealedValue, role: str, key: RoleKeyPair, aad: bytes) -> bytes:
    entry = sealed.wrapped[role]
    shared = key.private.exchange(X25519PublicKey.from_public_bytes(b64decode(entry["epk"])))
    content_key = ChaCha20Poly1305(_v1_wrap_key(shared, role)).decrypt(
        b64decode(entry["nonce"]), b64decode(entry["key"]), role.encode()
    )
    return ChaCha20Poly1305(content_key).decrypt(
        b64decode(sealed.nonce), b64decode(sealed.ciphertext), aad
    )
