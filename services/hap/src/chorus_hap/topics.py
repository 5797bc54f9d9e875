"""The core NATS subjects HAP uses, declared once in :mod:`chorus_common.topics`.

HAP answers no core subject of its own beyond the micro endpoints every service has;
the terminal asks the licensing service's micro ``health`` endpoint
(:data:`~chorus_common.topics.SERVICE_HEALTH` with ``service="licensing"``) how the
license stands (``status``): a :class:`~chorus_common.topics.ServiceHealth`, whose
``checks`` name ``license`` among them. The live feed (``chorus.>``) and the decision
tally (``chorus.hmmm.*.meta_discussion``) are envelope traffic, reached with
:meth:`~chorus_common.bus.Bus.tap` and :meth:`~chorus_common.bus.Bus.replay`.
"""

from __future__ import annotations

from chorus_common.topics import SERVICE_HEALTH, HealthQuery, ServiceHealth

__all__ = ["LICENSING", "SERVICE_HEALTH", "HealthQuery", "ServiceHealth"]

#: the ``service`` part of :data:`SERVICE_HEALTH` for the licensing service
LICENSING = "licensing"
