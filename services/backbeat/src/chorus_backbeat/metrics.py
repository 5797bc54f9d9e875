"""The backbeat service's metric families: category ``backbeat``.

Operation kinds are whatever agents report (``dht.store``, ``pubsub.publish``, …), so
no label values are created up front.
"""

from __future__ import annotations

from chorus_common.metrics import MetricSet, counter, gauge

__all__ = ["BackbeatMetrics"]


class BackbeatMetrics(MetricSet):
    index = gauge("chorus_backbeat_beat_index", "Last beat index seen")
    tempo = gauge("chorus_backbeat_tempo_bpm", "Tempo in beats per minute")
    pulse = gauge("chorus_backbeat_is_pulse", "1 while this replica publishes the beat")
    operations = counter(
        "chorus_backbeat_operations_total", "Operation phases reported", ["kind", "phase"]
    )
    overruns = counter(
        "chorus_backbeat_overruns_total", "Operations over their beat budget", ["kind"]
    )
    drift = gauge("chorus_backbeat_drift_seconds", "Largest agent drift from the pulse")
    silent = gauge("chorus_backbeat_silent_agents", "Agents that stopped reporting")
    bars = counter("chorus_backbeat_bars_total", "Bar reports published")
