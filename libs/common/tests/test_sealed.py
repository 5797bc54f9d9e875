"""Role sealing with standard HPKE (RFC 9180), and the version-1 records written before it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.errors import ForbiddenError, RequestInvalidError
from chorus_common.sealed import (
    ALG,
    LegacySealedValue,
    RoleKeyPair,
    SealedValue,
    open_sealed,
    parse_sealed,
    seal,
    upgrade_needed,
)
from chorus_common.signing import b64decode, b64encode
from chorus_common.ucxl_client import open_record

ADDRESS = "ucxl://gpt4:architect@chorus:v2/*^/decisions/d1.json"
OTHER = "ucxl://gpt4:architect@chorus:v2/*^/decisions/d2.json"
#: a value sealed by the version-1 code (before HPKE), with the role keys that open it
V1 = json.loads((Path(__file__).parent / "sealed_v1.json").read_text())

#: the suite the format names, spelled out from RFC 9180 rather than imported from the module
RFC_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def rfc_info(role: str, aad: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """The HPKE info of the documented v2 format (docs/security.md), built independently."""
    return b"\x00".join(
        (
            b"chorus-sealed/v2/hpke-x25519-sha256-chacha20poly1305",
            role.encode(),
            hashlib.sha256(aad).digest(),
            hashlib.sha256(nonce + ciphertext).digest(),
        )
    )


def test_a_value_is_sealed_with_hpke_one_content_key_per_role() -> None:
    arch, dev = RoleKeyPair.generate(), RoleKeyPair.generate()
    value = seal(
        b"PLAINTEXT-MARKER",
        {"architect": arch.public_text, "dev": dev.public_text},
        ADDRESS.encode(),
    )
    doc = value.model_dump()
    assert doc["v"] == 2 and doc["alg"] == ALG == "hpke-x25519-sha256-chacha20poly1305"
    assert set(doc["wrapped"]) == {"architect", "dev"}
    # HPKE enc (32-byte X25519 share) || the content key (32) sealed with its 16-byte tag
    assert all(len(b64decode(w)) == 32 + 32 + 16 for w in doc["wrapped"].values())
    assert "PLAINTEXT-MARKER" not in value.model_dump_json()
    assert not upgrade_needed(doc)
    for role, key in (("architect", arch), ("dev", dev)):
        assert open_sealed(doc, role, key, aad=ADDRESS.encode()) == b"PLAINTEXT-MARKER"


def test_hpke_interoperability_with_cryptography_directly() -> None:
    """A value sealed here opens with cryptography's HPKE API and the documented info, and back."""
    arch = RoleKeyPair.generate()
    sealed = seal(b'{"x": 1}', {"architect": arch.public_text}, ADDRESS.encode())
    nonce, ciphertext = b64decode(sealed.nonce), b64decode(sealed.ciphertext)
    content_key = RFC_SUITE.decrypt(
        b64decode(sealed.wrapped["architect"]),
        arch.private,
        info=rfc_info("architect", ADDRESS.encode(), nonce, ciphertext),
    )
    aad = ALG.encode() + b"\x00" + ADDRESS.encode()
    assert ChaCha20Poly1305(content_key).decrypt(nonce, ciphertext, aad) == b'{"x": 1}'

    # and a value made by hand with cryptography's HPKE opens through open_sealed
    key, nonce = ChaCha20Poly1305.generate_key(), os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, b"by hand", aad)
    info = rfc_info("architect", ADDRESS.encode(), nonce, ciphertext)
    doc = {
        "v": 2,
        "alg": ALG,
        "nonce": b64encode(nonce),
        "ciphertext": b64encode(ciphertext),
        "wrapped": {
            "architect": b64encode(RFC_SUITE.encrypt(key, arch.private.public_key(), info=info))
        },
    }
    assert open_sealed(doc, "architect", arch, aad=ADDRESS.encode()) == b"by hand"


def test_only_the_roles_it_was_sealed_to_open_it() -> None:
    arch, other = RoleKeyPair.generate(), RoleKeyPair.generate()
    value = seal(b"v", {"architect": arch.public_text}, ADDRESS.encode())
    with pytest.raises(ForbiddenError, match="not sealed to role 'ops'"):
        open_sealed(value, "ops", arch, aad=ADDRESS.encode())
    with pytest.raises(ForbiddenError, match="wrong role key"):
        open_sealed(value, "architect", other, aad=ADDRESS.encode())


def _tampered(doc: dict[str, Any], field: str) -> dict[str, Any]:
    text = doc[field] if field != "wrapped" else doc["wrapped"]["architect"]
    raw = bytearray(b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    if field == "wrapped":
        return {**doc, "wrapped": {"architect": b64encode(bytes(raw))}}
    return {**doc, field: b64encode(bytes(raw))}


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped"])
def test_one_flipped_bit_anywhere_fails_to_open(field: str) -> None:
    arch = RoleKeyPair.generate()
    doc = seal(b"value", {"architect": arch.public_text}, ADDRESS.encode()).model_dump()
    with pytest.raises(ForbiddenError, match="altered"):
        open_sealed(_tampered(doc, field), "architect", arch, aad=ADDRESS.encode())


def test_a_sealed_key_moved_to_another_role_address_or_value_opens_nothing() -> None:
    # one person holds two roles with the same key pair: only the role binding stops a move
    shared = RoleKeyPair.generate()
    roles = {"architect": shared.public_text, "reviewer": shared.public_text}
    value = seal(b"for architects", {"architect": shared.public_text}, ADDRESS.encode())
    moved = {**value.model_dump(), "wrapped": {"reviewer": value.wrapped["architect"]}}
    with pytest.raises(ForbiddenError, match="altered"):
        open_sealed(moved, "reviewer", shared, aad=ADDRESS.encode())

    # the same sealed value presented as another address's
    with pytest.raises(ForbiddenError, match="altered"):
        open_sealed(value, "architect", shared, aad=OTHER.encode())

    # a sealed key carried over to another value sealed to the same role and address
    second = seal(b"second", roles, ADDRESS.encode())
    spliced = {**second.model_dump(), "wrapped": {"architect": value.wrapped["architect"]}}
    with pytest.raises(ForbiddenError, match="altered"):
        open_sealed(spliced, "architect", shared, aad=ADDRESS.encode())


def test_open_record_binds_to_the_address_asked_for() -> None:
    """A node that answers another address's record (relabelled or not) gets no value out."""
    arch = RoleKeyPair.generate()
    sealed = seal(b'{"a": 1}', {"architect": arch.public_text}, ADDRESS.encode()).model_dump()
    record = {"address": ADDRESS, "sealed": sealed, "version": 1}
    assert open_record(record, ADDRESS, "architect", arch) == {"a": 1}
    with pytest.raises(ForbiddenError, match=r"when .* was asked for"):
        open_record(record, OTHER, "architect", arch)
    with pytest.raises(ForbiddenError, match="altered"):
        open_record({**record, "address": OTHER}, OTHER, "architect", arch)


def test_version_1_records_stay_readable() -> None:
    """A value written by the code before HPKE (kept as a fixture) opens for both its roles."""
    sealed = V1["sealed"]
    assert isinstance(parse_sealed(sealed), LegacySealedValue)
    assert upgrade_needed(sealed) and upgrade_needed({"address": V1["address"], "sealed": sealed})
    for role in ("architect", "ops"):
        key = RoleKeyPair.from_private(V1["keys"][role])
        opened = open_sealed(sealed, role, key, aad=V1["address"].encode())
        assert json.loads(opened) == {"decision": "written before HPKE"}
    with pytest.raises(ForbiddenError, match="altered"):
        open_sealed(
            _tampered(sealed, "ciphertext"),
            "architect",
            RoleKeyPair.from_private(V1["keys"]["architect"]),
            aad=V1["address"].encode(),
        )


def test_upgrade_needed_and_unknown_formats() -> None:
    arch = RoleKeyPair.generate()
    v2 = seal(b"x", {"architect": arch.public_text})
    assert not upgrade_needed(v2) and not upgrade_needed(v2.model_dump())
    assert not upgrade_needed({"address": ADDRESS, "sealed": None, "deleted": True})
    assert isinstance(parse_sealed(v2.model_dump()), SealedValue)
    with pytest.raises(RequestInvalidError, match=r"v=3 .* is not known here"):
        parse_sealed({**v2.model_dump(), "v": 3})
    with pytest.raises(RequestInvalidError, match="malformed"):
        parse_sealed({"v": 2, "alg": ALG, "ciphertext": "x"})


@settings(max_examples=40, deadline=None)
@given(
    plaintext=st.binary(max_size=2048),
    aad=st.binary(max_size=2048),
    roles=st.lists(
        st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True), min_size=1, max_size=4, unique=True
    ),
)
def test_any_value_opens_for_each_of_its_roles_and_no_other_binding(
    plaintext: bytes, aad: bytes, roles: list[str]
) -> None:
    keys = {role: RoleKeyPair.generate() for role in roles}
    value = seal(plaintext, {r: k.public_text for r, k in keys.items()}, aad)
    for role, key in keys.items():
        assert open_sealed(value, role, key, aad=aad) == plaintext
        with pytest.raises(ForbiddenError):
            open_sealed(value, role, key, aad=aad + b"!")
