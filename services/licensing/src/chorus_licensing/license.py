"""Signed licenses: the document, its Ed25519 signature, and offline verification.

A license file is ``{"license": {...}, "issuer": <key fingerprint>, "signature": <b64>}``;
the signature covers the canonical JSON of ``license``. Verification needs only
the issuer's public key and names the precise reason a license is refused.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chorus_common.errors import ForbiddenError
from chorus_common.signing import AgentKey, b64decode, verify_signature

__all__ = [
    "License",
    "LicenseError",
    "fingerprint",
    "load_license_file",
    "sign_license",
    "verify_license",
]


class LicenseError(ForbiddenError):
    """A license that cannot be used; ``reason`` is a stable word for metrics and clients."""

    code = "license_invalid"
    title = "License refused"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


class License(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    license_id: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    tier: str = "standard"
    seats: int = Field(ge=1, le=100_000)
    features: list[str] = Field(default_factory=list)
    not_before: datetime
    expires_at: datetime
    cluster_id: str = Field(min_length=1)

    def canonical(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()


def fingerprint(public_key: str) -> str:
    """Short, stable id of an issuer key (first 16 hex of SHA-256 of the raw key)."""
    return hashlib.sha256(b64decode(public_key)).hexdigest()[:16]


def sign_license(lic: License, issuer: AgentKey) -> dict[str, Any]:
    return {
        "license": lic.model_dump(mode="json"),
        "issuer": fingerprint(issuer.public_key),
        "signature": issuer.sign(lic.canonical()),
    }


def verify_license(
    doc: Any, issuer_public_key: str, cluster_id: str, now: datetime | None = None
) -> License:
    """Return the license if it may be used here and now, else raise LicenseError(reason)."""
    now = now or datetime.now(UTC)
    if not isinstance(doc, dict) or not {"license", "signature"} <= set(doc):
        raise LicenseError("malformed", "license file must hold 'license' and 'signature'")
    try:
        lic = License.model_validate(doc["license"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise LicenseError("malformed", f"license field {where}: {first['msg']}") from None
    if doc.get("issuer") and doc["issuer"] != fingerprint(issuer_public_key):
        raise LicenseError(
            "wrong_issuer",
            f"license {lic.license_id} was issued by key {doc['issuer']}, not by the configured "
            f"issuer key {fingerprint(issuer_public_key)} (CHORUS_LICENSE_ISSUER_KEY)",
        )
    if not verify_signature(issuer_public_key, lic.canonical(), str(doc["signature"])):
        raise LicenseError("tampered", f"license {lic.license_id} does not match its signature")
    if now < lic.not_before:
        raise LicenseError(
            "not_yet_valid", f"license {lic.license_id} is valid from {lic.not_before.isoformat()}"
        )
    if now >= lic.expires_at:
        raise LicenseError(
            "expired", f"license {lic.license_id} expired at {lic.expires_at.isoformat()}"
        )
    if lic.cluster_id not in (cluster_id, "*"):
        raise LicenseError(
            "wrong_cluster",
            f"license {lic.license_id} is for cluster {lic.cluster_id!r}, this is {cluster_id!r} "
            f"(CHORUS_CLUSTER)",
        )
    return lic


def load_license_file(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise LicenseError("malformed", f"license file is not JSON: {exc}") from None
