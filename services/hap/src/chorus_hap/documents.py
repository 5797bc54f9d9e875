"""The KV documents HAP reads that other services write, each as a pydantic model.

HAP's own documents are its web sessions (:class:`chorus_hap.sessions.SessionRecord`).
It also reads the admin lease (``chorus-election``, ``leader.admin``, written by
chorus_common.leadership) for ``status``, and the agents' registry documents
(``chorus-registry``, ``agent.<id>``, written through chorus_common.registry by every
service that owns a field) for ``peers``. Both models declare only what HAP reads and
keep whatever else a document holds, so an older or newer writer's document still reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chorus_common.bus import Bucket, Bus
from chorus_common.topology import BUCKET_ELECTION, BUCKET_REGISTRY

__all__ = [
    "ADMIN_LEASE_KEY",
    "AdminLease",
    "RegistryAgent",
    "election_leases",
    "registry_agents",
]

#: the admin's lease in ``chorus-election`` (chorus_common.leadership: ``leader.<scope>``)
ADMIN_LEASE_KEY = "admin"


class AdminLease(BaseModel):
    """A leader lease (chorus_common.leadership.LeaseRecord): who holds it, in which term."""

    model_config = ConfigDict(extra="allow")

    #: None once the holder released it
    holder: str | None = None
    term: int | None = None


class RegistryAgent(BaseModel):
    """An agent's registry document as the peers view shows it: every field it holds but
    the public key (services add the fields they own, so the rest is kept as it is)."""

    model_config = ConfigDict(extra="allow")

    agent: str | None = None
    roles: list[str] | None = None
    capabilities: list[str] | None = None
    availability: str | None = None
    public_key: str | None = Field(default=None, exclude=True)

    def shown(self) -> dict[str, Any]:
        """The document as stored, without its public key."""
        return self.model_dump(exclude_unset=True)


def election_leases(bus: Bus) -> Bucket[AdminLease]:
    """The leases of ``chorus-election`` (``leader.<scope>``)."""
    return bus.bucket(BUCKET_ELECTION, AdminLease, prefix="leader.")


def registry_agents(bus: Bus) -> Bucket[RegistryAgent]:
    """The agents' documents of ``chorus-registry`` (``agent.<id>``)."""
    return bus.bucket(BUCKET_REGISTRY, RegistryAgent, prefix="agent.")
