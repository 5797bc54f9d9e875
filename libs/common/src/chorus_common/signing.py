"""Ed25519 agent keys: every agent signs its feed; receivers verify with the registered key.

Keys and signatures travel as unpadded URL-safe base64, so they fit in JSON,
HTTP paths and NATS headers unchanged. Decoding is strict (no silently dropped
characters), so one key or signature has exactly one textual form.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from chorus_common.errors import ConfigError

__all__ = ["AgentKey", "KeyFileFormat", "b64decode", "b64encode", "verify_signature"]

KeyFileFormat = Literal["raw", "pem"]

_PEM_MARKER = "-----BEGIN"


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding (the form keys and signatures travel in)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict inverse of :func:`b64encode`; padding is optional.

    Raises ``ValueError`` (``binascii.Error``) on any character outside the
    URL-safe alphabet instead of skipping it, so a mangled key never decodes to
    something else.
    """
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class AgentKey:
    """An agent's private signing key; ``public_key`` is what the registry stores."""

    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> AgentKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> AgentKey:
        """From the raw 32-byte seed; ``ValueError`` for any other length."""
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 private key is 32 bytes, got {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def to_private_bytes(self) -> bytes:
        return self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted (the file's 0600 mode is the protection)."""
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    @cached_property
    def public_key(self) -> str:
        """The 32-byte public key, URL-safe base64 without padding."""
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return b64encode(raw)

    def sign(self, data: bytes) -> str:
        """Ed25519 signature over ``data``, URL-safe base64 without padding."""
        return b64encode(self.private.sign(data))

    def verify(self, data: bytes, signature: str) -> bool:
        return verify_signature(self.public_key, data, signature)

    def __repr__(self) -> str:
        # never show private material, even by accident in a log line
        return f"AgentKey(public_key={self.public_key!r})"

    def save(self, path: Path, fmt: KeyFileFormat = "raw") -> None:
        """Write the key readable by the owner only (mode 0600), replacing any old file.

        ``raw`` is one line of base64 (the 32-byte seed); ``pem`` is PKCS#8 PEM for
        tools such as ``openssl``. The file is written beside its final name and
        renamed, so a crash never leaves a half-written key.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (
            self.to_pem() if fmt == "pem" else (b64encode(self.to_private_bytes()) + "\n").encode()
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when an old temp file had looser bits
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> AgentKey:
        """Read a key saved by :meth:`save` in either format (PEM is detected)."""
        path = Path(path)
        text = path.read_text(encoding="ascii", errors="replace").strip()
        try:
            if text.startswith(_PEM_MARKER):
                loaded = load_pem_private_key(text.encode("ascii"), password=None)
                if not isinstance(loaded, Ed25519PrivateKey):
                    raise ValueError(f"it holds a {type(loaded).__name__}")
                return cls(loaded)
            return cls.from_private_bytes(b64decode(text))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(
                f"signing key file {path} is not an Ed25519 private key "
                f"(expected one line of base64 or a PKCS#8 PEM block): {exc}",
                path=str(path),
            ) from None

    @classmethod
    def load_or_create(cls, path: Path, fmt: KeyFileFormat = "raw") -> AgentKey:
        """The key at ``path``, generating and saving one the first time."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path, fmt)
        return key


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """True only for a well-formed key and a signature it made over ``data``.

    Never raises: malformed keys, signatures or argument types are simply
    ``False``, because callers turn ``False`` into their own specific error.
    """
    try:
        key = Ed25519PublicKey.from_public_bytes(b64decode(public_key))
        raw_sig = b64decode(signature)
        if len(raw_sig) != 64:
            return False
        key.verify(raw_sig, data)
    except InvalidSignature:
        return False
    except Exception:  # a verifier must answer, not crash, on hostile input of any type
        return False
    return True
