"""The core NATS subjects HAP uses, each declared once with the model it carries.

HAP answers no core subject of its own beyond the micro endpoints every service has;
the terminal asks the licensing service's micro ``health`` endpoint how the license
stands (``status``). The live feed (``chorus.>``) and the decision tally
(``chorus.hmmm.*.meta_discussion``) are envelope traffic, reached with
:meth:`~chorus_common.bus.Bus.tap` and :meth:`~chorus_common.bus.Bus.replay`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from chorus_common.bus import declare_topic

__all__ = ["LICENSING_HEALTH", "HealthQuery", "ServiceHealth"]


class HealthQuery(BaseModel):
    """A micro ``health`` request: it carries nothing (the endpoint reads no body)."""


class ServiceHealth(BaseModel):
    """A service's micro health document (chorus_common.service ``health_document``), as
    far as HAP reads it: the status of each check by name (``license`` among them)."""

    model_config = ConfigDict(extra="ignore")

    service: str | None = None
    status: str | None = None
    ready: bool | None = None
    checks: dict[str, str]


LICENSING_HEALTH = declare_topic(
    "chorus.svc.licensing.health",
    HealthQuery,
    "The licensing service's micro health endpoint: its checks, the license among them",
    reply=ServiceHealth,
)
