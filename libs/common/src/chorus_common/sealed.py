"""Role-sealed values: content under a random ChaCha20-Poly1305 key, that key wrapped for each role.

Each recipient role has an X25519 key pair. For every role a value is sealed
to, an ephemeral X25519 exchange and HKDF derive a wrapping key; the content
key is wrapped with it. Storage nodes only ever see ciphertext; only a holder
of one of the role private keys can open the value, and tampering with any
byte fails authentication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pydantic import BaseModel

from chorus_common.errors import ForbiddenError, RequestInvalidError
from chorus_common.signing import b64decode, b64encode


class SealedValue(BaseModel):
    """What nodes store: ciphertext and one wrapped key per role."""

    ciphertext: str
    nonce: str
    wrapped: dict[str, dict[str, str]]  # role -> {epk, nonce, key}


@dataclass(frozen=True)
class RoleKeyPair:
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


def _wrap_key(shared: bytes, role: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"chorus-sealed:{role}".encode()
    ).derive(shared)


def seal(plaintext: bytes, recipients: dict[str, str], aad: bytes = b"") -> SealedValue:
    """Encrypt ``plaintext`` for every role in ``recipients`` (role -> X25519 public key)."""
    if not recipients:
        raise RequestInvalidError("a value must be sealed to at least one role")
    content_key = ChaCha20Poly1305.generate_key()
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(content_key).encrypt(nonce, plaintext, aad)
    wrapped: dict[str, dict[str, str]] = {}
    for role, public in recipients.items():
        try:
            peer = X25519PublicKey.from_public_bytes(b64decode(public))
        except ValueError:
            raise RequestInvalidError(
                f"the public key registered for role {role!r} is not X25519"
            ) from None
        ephemeral = X25519PrivateKey.generate()
        wrap_nonce = os.urandom(12)
        key = ChaCha20Poly1305(_wrap_key(ephemeral.exchange(peer), role)).encrypt(
            wrap_nonce, content_key, role.encode()
        )
        wrapped[role] = {
            "epk": b64encode(ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
            "nonce": b64encode(wrap_nonce),
            "key": b64encode(key),
        }
    return SealedValue(ciphertext=b64encode(ciphertext), nonce=b64encode(nonce), wrapped=wrapped)


def open_sealed(value: SealedValue, role: str, key: RoleKeyPair, aad: bytes = b"") -> bytes:
    """Decrypt as ``role``; a role it was not sealed to, a wrong key or any tampering is refused."""
    entry = value.wrapped.get(role)
    if entry is None:
        raise ForbiddenError(
            f"this value is not sealed to role {role!r} (roles: {sorted(value.wrapped)})"
        )
    try:
        shared = key.private.exchange(X25519PublicKey.from_public_bytes(b64decode(entry["epk"])))
        content_key = ChaCha20Poly1305(_wrap_key(shared, role)).decrypt(
            b64decode(entry["nonce"]), b64decode(entry["key"]), role.encode()
        )
        return ChaCha20Poly1305(content_key).decrypt(
            b64decode(value.nonce), b64decode(value.ciphertext), aad
        )
    except (InvalidTag, ValueError, KeyError):
        raise ForbiddenError(
            f"cannot open the value as role {role!r}: wrong role key, or the ciphertext was altered"
        ) from None
