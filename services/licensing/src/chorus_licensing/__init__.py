"""CHORUS licensing service: license validation and cluster seat leases."""

from chorus_licensing.service import LicensingService

__all__ = ["LicensingService"]
