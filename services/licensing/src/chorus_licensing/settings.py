"""Licensing settings: CHORUS_* common ones plus the license, its upstream and its seats."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from chorus_common.config import ChorusSettings

__all__ = ["LicensingSettings"]


class LicensingSettings(ChorusSettings):
    licensing_mode: Literal["service", "authority"] = "service"
    license_file: Path | None = None
    #: the issuer's Ed25519 public key (URL-safe base64), or a path to a file holding it
    license_issuer_key: str = ""
    license_upstream_url: str | None = None
    license_grace_seconds: float = Field(default=72 * 3600.0, ge=0)
    license_validate_interval_seconds: float = Field(default=300.0, gt=0)
    license_breaker_failures: int = Field(default=3, ge=1)
    license_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    license_lease_ttl_seconds: float = Field(default=30.0, gt=0)
    #: authority mode: license ids it no longer accepts
    licensing_revoked: str = ""

    def issuer_key(self) -> str:
        value = self.license_issuer_key.strip()
        if value and Path(value).is_file():
            return Path(value).read_text().strip()
        return value
