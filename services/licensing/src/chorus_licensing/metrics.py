"""The licensing service's metric families: category ``licensing``."""

from __future__ import annotations

from chorus_common.metrics import MetricSet, counter, gauge

__all__ = ["LEASE_EVENTS", "VALIDATION_RESULTS", "LicensingMetrics"]

#: what an online validation can answer (``chorus_licensing_validations_total{result}``)
VALIDATION_RESULTS = ("valid", "invalid", "unreachable")
#: what happens to a seat lease (``chorus_licensing_lease_events_total{event}``)
LEASE_EVENTS = ("granted", "denied", "renewed", "released", "expired")


class LicensingMetrics(MetricSet):
    validations = counter(
        "chorus_licensing_validations_total",
        "License validations by result",
        ["result"],
        known=[(result,) for result in VALIDATION_RESULTS],
    )
    breaker = gauge(
        "chorus_licensing_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open"
    )
    grace = gauge(
        "chorus_licensing_grace_remaining_seconds",
        "Grace left while the upstream is unreachable (0 when not in grace)",
    )
    seats_used = gauge("chorus_licensing_seats_used", "Seat leases held")
    seats_total = gauge("chorus_licensing_seats_total", "Seats of the license")
    leases = counter(
        "chorus_licensing_lease_events_total",
        "Lease grants, denials, renewals, releases, expirations",
        ["event"],
        known=[(event,) for event in LEASE_EVENTS],
    )
    valid = gauge("chorus_licensing_license_valid", "1 while the license may be used")
