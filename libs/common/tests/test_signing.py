"""Ed25519 agent keys: files, encodings, and a verifier that never raises."""

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.errors import ConfigError
from chorus_common.signing import AgentKey, KeyFileFormat, b64decode, b64encode, verify_signature


def test_sign_and_verify() -> None:
    key = AgentKey.generate()
    sig = key.sign(b"hello")
    assert verify_signature(key.public_key, b"hello", sig)
    assert key.verify(b"hello", sig)
    assert not verify_signature(key.public_key, b"hellO", sig)
    assert not verify_signature(AgentKey.generate().public_key, b"hello", sig)


def test_encodings_are_unpadded_urlsafe_base64() -> None:
    key = AgentKey.generate()
    sig = key.sign(b"x")
    for text, size in ((key.public_key, 32), (sig, 64)):
        assert "=" not in text and "+" not in text and "/" not in text
        assert len(b64decode(text)) == size
    assert b64decode(b64encode(b"\xfb\xff")) == b"\xfb\xff"
    assert b64decode("-_8") == base64.urlsafe_b64decode("-_8=")


def test_decoding_is_strict() -> None:
    with pytest.raises(ValueError):
        b64decode("abc!")  # lax decoders drop the '!' and decode something else
    with pytest.raises(ValueError):
        b64decode("a")  # impossible length


def test_raw_private_bytes_round_trip() -> None:
    key = AgentKey.generate()
    raw = key.to_private_bytes()
    assert len(raw) == 32
    assert AgentKey.from_private_bytes(raw).public_key == key.public_key
    with pytest.raises(ValueError, match="32 bytes"):
        AgentKey.from_private_bytes(raw[:31])


def test_repr_shows_no_private_material() -> None:
    key = AgentKey.generate()
    text = repr(key)
    assert key.public_key in text
    assert b64encode(key.to_private_bytes()) not in text


@pytest.mark.parametrize("fmt", ["raw", "pem"])
def test_save_and_load(tmp_path: Path, fmt: KeyFileFormat) -> None:
    key = AgentKey.generate()
    path = tmp_path / "keys" / "agent.key"
    key.save(path, fmt)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert AgentKey.load(path).public_key == key.public_key
    content = path.read_bytes()
    if fmt == "pem":
        assert content.startswith(b"-----BEGIN PRIVATE KEY-----")
        loaded: Any = load_pem_private_key(content, password=None)  # readable by other tools
        assert AgentKey(loaded).public_key == key.public_key
    else:
        assert b64decode(content.decode().strip()) == key.to_private_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["agent.key"]  # no temp file left


def test_save_tightens_an_existing_loose_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    path.write_text("old")
    os.chmod(path, 0o644)
    AgentKey.generate().save(path)
    assert (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        "not base64 at all!",
        b64encode(b"short"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_load_refuses_a_bad_file_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.key"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        AgentKey.load(path)
    assert str(path) in info.value.detail and "Ed25519" in info.value.detail


def test_load_refuses_a_pem_of_another_algorithm(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    other = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.key"
    path.write_bytes(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(ConfigError, match="not an Ed25519"):
        AgentKey.load(path)


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    first = AgentKey.load_or_create(path)
    assert AgentKey.load_or_create(path).public_key == first.public_key


@pytest.mark.parametrize(
    ("public_key", "data", "signature"),
    [
        ("not-a-key", b"hello", None),
        ("", b"hello", None),
        (None, b"hello", None),
        (b"bytes", b"hello", None),
        (123, b"hello", None),
        ("VALID", b"hello", "!!"),
        ("VALID", b"hello", ""),
        ("VALID", b"hello", None),
        ("VALID", b"hello", "AAAA"),
        ("VALID", "text, not bytes", "SIG"),
        ("VALID", None, "SIG"),
        ("VALID", b"hello", "SIGA"),  # one character too many: 65 bytes
        ("VALID", b"hello", "SIG==="),
        ("VALID", b"hello", "SIG\n"),
        ("VALID", b"hello", "ÄÖÜ"),
    ],
)
def test_verify_signature_never_raises(public_key: Any, data: Any, signature: Any) -> None:
    key = AgentKey.generate()
    sig = key.sign(b"hello")
    public_key = key.public_key if public_key == "VALID" else public_key
    signature = (
        sig + signature[3:]
        if isinstance(signature, str) and signature.startswith("SIG")
        else signature
    )
    assert verify_signature(public_key, data, signature) is False


def test_a_mangled_signature_does_not_verify() -> None:
    key = AgentKey.generate()
    sig = key.sign(b"data")
    mangled = sig[:10] + "." + sig[10:]  # a lax decoder would skip the '.' and accept it
    assert not verify_signature(key.public_key, b"data", mangled)


_KEY = AgentKey.generate()


@given(data=st.binary(max_size=256), flip=st.integers(min_value=0))
def test_any_changed_byte_breaks_the_signature(data: bytes, flip: int) -> None:
    sig = _KEY.sign(data)
    assert verify_signature(_KEY.public_key, data, sig)
    changed = data + b"\0" if not data else _flip(data, flip % len(data))
    assert not verify_signature(_KEY.public_key, changed, sig)


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)
