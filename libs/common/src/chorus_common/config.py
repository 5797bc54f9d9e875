"""Settings from ``CHORUS_*`` environment variables, validated once at start.

Every service has one settings class derived from :class:`ChorusSettings`; a bad
value stops the process with a one-line message naming the variable and what it
expects (:func:`load_settings`), never a pydantic traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from chorus_common.errors import ConfigError

__all__ = ["ChorusSettings", "load_settings"]

ENV_PREFIX = "CHORUS_"


def _default_node_id() -> str:
    return socket.gethostname().split(".")[0] or "node"


class ChorusSettings(BaseSettings):
    """What every service reads: bus, HTTP, identity, health, limits."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # identity (also the constant labels of every metric)
    node_id: str = Field(default_factory=_default_node_id, pattern=r"^[A-Za-z0-9_\-\.]{1,64}$")
    environment: str = "development"
    cluster: str = "local"

    # bus
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    nats_creds: Path | None = None
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    nats_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    js_replicas: int = Field(default=1, ge=1, le=5)
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    admin_token: SecretStr | None = None
    #: a connection whose request headers are not complete this long after it connected (or
    #: after its previous response) is closed: slowloris clients cannot hold connections
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=10)

    # health
    health_interval_seconds: float = Field(default=30.0, gt=0)
    health_timeout_seconds: float = Field(default=10.0, gt=0)
    health_shutdown_on_critical: bool = False

    # process
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    shutdown_timeout_seconds: float = Field(default=8.0, gt=0, le=30)
    data_dir: Path = Path(".chorus")
    redis_url: str | None = None
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    #: hold a seat lease from the licensing service or refuse work (fail closed); turning it
    #: off is an explicit choice (CHORUS_LICENSE_REQUIRED=false), never the default
    license_required: bool = True
    #: bearer tokens with the ``read`` scope (comma-separated): GET routes, SSE, WebSocket
    read_tokens: str = ""
    #: read routes answer without a token (a laptop, a demo); never the default
    public_read: bool = False


S = TypeVar("S", bound=ChorusSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, turning the first bad value into a ConfigError."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_explain(cls, exc)) from None


def _explain(cls: type[ChorusSettings], exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        variable = f"{ENV_PREFIX}{field.upper()}"
        given = err.get("input")
        secret = any(word in field for word in ("password", "token", "secret", "key"))
        shown = "" if isinstance(given, dict) or secret else f"={given!r}"
        messages.append(f"{variable}{shown}: {err['msg'].lower()}")
    return "invalid configuration: " + "; ".join(messages)
