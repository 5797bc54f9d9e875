"""HTTP routes of the licensing service: the license status and seat leases, and in
authority mode the KACHING-compatible activate / validate / heartbeat."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from chorus_common.dependencies import Provided, Requires
from chorus_common.identity import Scope
from chorus_common.service import problem_responses
from chorus_common.topics import LeaseRequest
from chorus_licensing.authority import Authority
from chorus_licensing.breaker import BreakerState
from chorus_licensing.documents import Lease
from chorus_licensing.keeper import LicenseKeeper
from chorus_licensing.online import Result

__all__ = [
    "Lease",
    "LeaseRequest",
    "Leases",
    "LicenseStatus",
    "OnlineValidation",
    "Seats",
    "UpstreamAcceptance",
    "UpstreamRefusal",
    "UpstreamRequest",
    "authority_router",
    "router",
]

router = APIRouter()
#: included only with ``CHORUS_LICENSING_MODE=authority``
authority_router = APIRouter()

Keeper = Annotated[LicenseKeeper, Provided(LicenseKeeper)]


class UpstreamRequest(BaseModel):
    license_id: str
    cluster_id: str
    instance: str = ""


class Leases(BaseModel):
    leases: list[Lease]


class Seats(BaseModel):
    total: int
    used: int
    free: int


class OnlineValidation(BaseModel):
    upstream: str | None
    result: Result
    reason: str | None
    last_good: float | None
    grace_remaining_seconds: float | None
    breaker: BreakerState


class LicenseStatus(BaseModel):
    valid: bool
    reason: str | None
    error: str | None
    license_id: str | None
    customer: str | None
    tier: str | None
    features: list[str]
    seats: Seats
    expires_at: str | None
    license_file: str | None
    reload_error: str | None
    online: OnlineValidation
    holders: list[str]


class UpstreamRefusal(BaseModel):
    valid: Literal[False]
    reason: str


class UpstreamAcceptance(BaseModel):
    valid: Literal[True]
    license_id: str
    expires_at: str


@router.get("/v1/license", tags=["license"], responses=problem_responses(503))
async def license_status(keeper: Keeper) -> LicenseStatus:
    """Status, tier, seats used/free, expiry, grace remaining, breaker state."""
    doc = keeper.status()
    leases = await keeper.held()
    doc["seats"]["used"] = len(leases)
    doc["seats"]["free"] = max(0, doc["seats"]["total"] - len(leases))
    doc["holders"] = sorted({lease.holder for lease in leases})
    return LicenseStatus.model_validate(doc)


@router.get("/v1/leases", tags=["leases"], responses=problem_responses(503))
async def leases(keeper: Keeper) -> Leases:
    return Leases(leases=[Lease.of(lease) for lease in await keeper.held()])


@router.post(
    "/v1/leases",
    dependencies=[Requires(Scope.ADMIN)],
    status_code=201,
    tags=["leases"],
    responses=problem_responses(403, 503),
)
async def grant(body: LeaseRequest, keeper: Keeper) -> Lease:
    """Grant one of the license's seats (TTL CHORUS_LICENSE_LEASE_TTL_SECONDS)."""
    return Lease.of(await keeper.grant(body.holder, body.kind))


@router.put(
    "/v1/leases/{lease_id}",
    dependencies=[Requires(Scope.ADMIN)],
    tags=["leases"],
    responses=problem_responses(403, 404, 409, 503),
)
async def renew(lease_id: str, keeper: Keeper) -> Lease:
    return Lease.of(await keeper.renew(lease_id))


@router.delete(
    "/v1/leases/{lease_id}",
    dependencies=[Requires(Scope.ADMIN)],
    status_code=204,
    tags=["leases"],
    responses=problem_responses(404, 409, 503),
)
async def release(lease_id: str, keeper: Keeper) -> None:
    await keeper.release(lease_id)


async def endpoint(
    body: UpstreamRequest, authority: Annotated[Authority, Provided(Authority)]
) -> UpstreamRefusal | UpstreamAcceptance:
    # the authority's answer for one license, the same for all three verbs
    answer = authority.judge(body.license_id, body.cluster_id)
    if answer["valid"]:
        return UpstreamAcceptance.model_validate(answer)
    return UpstreamRefusal.model_validate(answer)


for _verb in ("activate", "validate", "heartbeat"):
    authority_router.add_api_route(
        f"/api/v1/licenses/{_verb}", endpoint, methods=["POST"], tags=["authority"]
    )
