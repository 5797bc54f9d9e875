"""Licensing test support: issuer keys and signed licenses made on the spot."""

from __future__ import annotations

import tempfile
from pathlib import Path

from chorus_common.signing import AgentKey
from chorus_licensing.issuing import IssuedLicense, issue

#: a valid license for the behaviour suite (cluster "local", the default CHORUS_CLUSTER)
BEHAVIOUR_DIR = Path(tempfile.mkdtemp(prefix="chorus-license-"))
BEHAVIOUR_LICENSE: IssuedLicense = issue(
    BEHAVIOUR_DIR, AgentKey.generate(), customer="tests", cluster_id="local", seats=5
)


def make_license(directory: Path, seats: int = 10, **kw: object) -> tuple[IssuedLicense, AgentKey]:
    issuer = AgentKey.generate()
    return issue(
        directory,
        issuer,
        customer="acme",
        cluster_id=str(kw.pop("cluster_id", "local")),
        seats=seats,
        **kw,
    ), issuer  # type: ignore[arg-type]
