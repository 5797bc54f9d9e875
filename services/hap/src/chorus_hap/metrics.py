"""The HAP service's metric family: category ``hap``."""

from __future__ import annotations

from chorus_common.metrics import MetricSet, counter, gauge
from chorus_hap.decisions import KIND_OF

__all__ = ["HapMetrics"]


class HapMetrics(MetricSet):
    sent = counter(
        "chorus_hap_messages_sent_total", "Envelopes people signed and sent, by type", ["type"]
    )
    logins = counter(
        "chorus_hap_logins_total",
        "Web sign-ins by result",
        ["result"],
        known=[("ok",), ("refused",)],
    )
    votes = counter(
        "chorus_hap_votes_total",
        "Votes cast through the portal",
        ["choice"],
        known=[(choice,) for choice in KIND_OF],  # approve, reject, abstain
    )
    viewers = gauge("chorus_hap_live_viewers", "Open live-feed connections")
    decisions = gauge("chorus_hap_open_decisions", "Decisions still taking votes")
