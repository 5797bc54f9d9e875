"""Issuing licenses: issuer keys, signed license files, and the development license of `chorus up`."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chorus_common.signing import AgentKey
from chorus_licensing.license import License, sign_license

__all__ = ["IssuedLicense", "development_license", "issue"]


@dataclass(frozen=True)
class IssuedLicense:
    license_file: Path
    issuer_public_key_file: Path
    license: License


def issue(
    directory: Path,
    issuer: AgentKey,
    *,
    customer: str,
    cluster_id: str,
    seats: int,
    days: float = 365,
    tier: str = "standard",
    features: list[str] | None = None,
    not_before: datetime | None = None,
    name: str = "license.json",
) -> IssuedLicense:
    directory.mkdir(parents=True, exist_ok=True)
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    lic = License(
        license_id=f"lic-{secrets.token_hex(6)}",
        customer=customer,
        tier=tier,
        seats=seats,
        features=features or [],
        not_before=start,
        expires_at=start + timedelta(days=days),
        cluster_id=cluster_id,
    )
    path = directory / name
    path.write_text(json.dumps(sign_license(lic, issuer), indent=2) + "\n")
    pub = directory / "issuer.pub"
    pub.write_text(issuer.public_key + "\n")
    return IssuedLicense(path, pub, lic)


def development_license(directory: Path, cluster_id: str, seats: int = 32) -> IssuedLicense:
    """The license `chorus up` makes for itself: a local issuer, this cluster, a year."""
    key_path = directory / "issuer.key"
    issuer = AgentKey.load_or_create(key_path)
    existing = directory / "license.json"
    if existing.exists():
        doc = json.loads(existing.read_text())
        lic = License.model_validate(doc["license"])
        if lic.cluster_id == cluster_id and lic.expires_at > datetime.now(UTC) + timedelta(days=1):
            return IssuedLicense(existing, directory / "issuer.pub", lic)
    return issue(
        directory,
        issuer,
        customer="development",
        cluster_id=cluster_id,
        seats=seats,
        tier="development",
        features=["all"],
    )
