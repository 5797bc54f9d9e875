"""HAP settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from chorus_common.config import ChorusSettings

__all__ = ["HapSettings"]


class HapSettings(ChorusSettings):
    #: the person's agent id on the mesh (defaults to human-<node id>)
    hap_agent_id: str = ""
    hap_role: str = Field(default="human", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    hap_mode: Literal["terminal", "web"] = "web"
    #: web logins: "token=agent_id" pairs, comma-separated; the admin token logs in as hap_agent_id
    hap_tokens: str = ""
    #: at most a week: the sessions bucket keeps nothing longer (chorus_common.topology)
    hap_session_seconds: float = Field(default=8 * 3600.0, ge=1, le=7 * 24 * 3600.0)
    #: keys session records; every replica needs the same one (a Secret). Unset: a random
    #: key made once in the data folder (hap-session.key, 0600)
    hap_session_key: SecretStr | None = None
    #: "auto": Secure cookies when the request came over https (TLS here, or a proxy's
    #: X-Forwarded-Proto: https); "always": for a TLS proxy that sends no such header
    hap_secure_cookies: Literal["auto", "always"] = "auto"
    #: votes needed to close a decision
    hap_quorum: int = Field(default=2, ge=1)
    #: a DHT node for the UCXL browser and decision records
    hap_dht_url: str | None = None

    def agent_id(self) -> str:
        return self.hap_agent_id or f"human-{self.node_id}"

    def logins(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in self.hap_tokens.split(","))):
            token, _, agent = pair.partition("=")
            out[token] = agent or self.agent_id()
        if self.admin_token is not None:
            out.setdefault(self.admin_token.get_secret_value(), self.agent_id())
        return out
