"""The coordinator's settings (CHORUS_COORDINATOR_* beside the shared CHORUS_* ones)."""

from __future__ import annotations

from pydantic import Field

from chorus_common.config import ChorusSettings

__all__ = ["CoordinatorSettings"]


class CoordinatorSettings(ChorusSettings):
    coordinator_claim_ttl_seconds: float = Field(default=60.0, gt=0)
    coordinator_assign_interval_seconds: float = Field(default=1.0, gt=0)
    coordinator_agent_ttl_seconds: float = Field(default=30.0, gt=0)
    coordinator_lease_ttl_seconds: float = Field(default=1.0, gt=0)
    coordinator_session_max_messages: int = Field(default=10, ge=2)
    coordinator_session_max_seconds: float = Field(default=1800.0, gt=0)
    coordinator_custom_rules: str = ""
    coordinator_llm_url: str | None = None
    coordinator_llm_model: str = "gpt-4o-mini"
    #: closed sessions, and any older than the max age, are dropped every sweep
    coordinator_session_sweep_seconds: float = Field(default=600.0, gt=0)
    coordinator_session_max_age_seconds: float = Field(default=7200.0, gt=0)
    #: every escalation is also POSTed here as JSON (a chat or paging hook)
    coordinator_escalation_webhook: str | None = None
