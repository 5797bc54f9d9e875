"""Ed25519 agent keys: every agent signs its feed; receivers verify with the registered key."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class AgentKey:
    """An agent's private signing key; ``public_key`` is what the registry stores."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> AgentKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> AgentKey:
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def to_private_bytes(self) -> bytes:
        return self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_key(self) -> str:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return b64encode(raw)

    def sign(self, data: bytes) -> str:
        return b64encode(self.private.sign(data))

    def save(self, path: Path) -> None:
        """Write the raw key, base64, readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(b64encode(self.to_private_bytes()) + "\n")

    @classmethod
    def load(cls, path: Path) -> AgentKey:
        return cls.from_private_bytes(b64decode(path.read_text().strip()))

    @classmethod
    def load_or_create(cls, path: Path) -> AgentKey:
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """True only for a well-formed key and a signature it made over ``data``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(b64decode(public_key))
        key.verify(b64decode(signature), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
