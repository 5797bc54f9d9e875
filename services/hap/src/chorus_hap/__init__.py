"""CHORUS hap service: human Agent Portal: terminal and web UI."""

from chorus_hap.service import HapService

__all__ = ["HapService"]
