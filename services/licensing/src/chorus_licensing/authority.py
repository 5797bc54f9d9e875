"""Authority mode (``CHORUS_LICENSING_MODE=authority``): the KACHING-compatible upstream.

It answers activate / validate / heartbeat for the license it holds itself, so an
air-gapped cluster needs no outside service.
"""

from __future__ import annotations

from typing import Any

from chorus_licensing.keeper import LicenseKeeper

__all__ = ["Authority"]


class Authority:
    """Judges a cluster's license against the one the keeper holds, minus revoked ids."""

    def __init__(self, keeper: LicenseKeeper, revoked: str = "") -> None:
        self.keeper = keeper
        #: ``CHORUS_LICENSING_REVOKED``: comma-separated license ids no longer accepted
        self.revoked = {r.strip() for r in revoked.split(",") if r.strip()}

    def judge(self, license_id: str, cluster_id: str) -> dict[str, Any]:
        lic = self.keeper.license
        if lic is None:
            return {"valid": False, "reason": "the authority holds no valid license"}
        if license_id != lic.license_id:
            return {"valid": False, "reason": f"unknown license {license_id}"}
        if license_id in self.revoked:
            return {"valid": False, "reason": f"license {license_id} was revoked"}
        if cluster_id != lic.cluster_id and lic.cluster_id != "*":
            return {"valid": False, "reason": f"license is not for cluster {cluster_id}"}
        return {
            "valid": True,
            "license_id": license_id,
            "expires_at": lic.expires_at.isoformat(),
        }
