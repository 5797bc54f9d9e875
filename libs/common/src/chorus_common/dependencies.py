"""What module-level route handlers receive instead of reaching into a service object.

A service's ``app.py`` declares an ``APIRouter`` whose endpoints are plain module
functions; each names the collaborators it needs as FastAPI dependencies::

    @router.get("/v1/tasks")
    async def tasks(board: Annotated[Board, Provided(Board)]) -> TaskPage: ...

    @router.post("/v1/tasks", dependencies=[Requires(Scope.ADMIN)])
    async def announce(...): ...

The service hands its collaborators over once (``Service.provide(board)``, at
construction or in ``setup()``) and includes the router; the handler never sees
the service, so it can be read, tested and moved without it. A collaborator
asked for before it is provided (a request racing set-up) answers 503.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from fastapi import Depends
from starlette.requests import HTTPConnection

from chorus_common.errors import UnavailableError
from chorus_common.identity import Identity, Scope

__all__ = ["Provided", "Requires", "provider", "requirement"]

T = TypeVar("T")

#: the key under ``app.state`` holding what the service provided, by type
PROVIDED_STATE = "provided"


def provider(kind: type[T]) -> Callable[[HTTPConnection], T]:
    """A dependency answering the ``kind`` instance the service provided."""

    def provide(conn: HTTPConnection) -> T:
        provided: dict[type[Any], Any] = getattr(conn.app.state, PROVIDED_STATE, {})
        try:
            return cast(T, provided[kind])
        except KeyError:
            raise UnavailableError(
                f"{kind.__name__} is not set up yet: the service is still starting"
            ) from None

    provide.__name__ = f"provide_{kind.__name__}"
    return provide


def Provided(kind: type[Any]) -> Any:
    """``Annotated[Kind, Provided(Kind)]``: the service's ``Kind``, as a route parameter."""
    return Depends(provider(kind))


def requirement(scope: Scope) -> Callable[[HTTPConnection], Awaitable[Identity]]:
    """A dependency: a bearer token whose identity has ``scope`` (401/403 otherwise).

    Checked by the service's token book (the framework's, not the route's): the
    route receives the caller's identity, and the OpenAPI document and the read
    guard learn the route's scope from the ``chorus_scope`` attribute.
    """

    async def check(conn: HTTPConnection) -> Identity:
        identity: Identity = await conn.app.state.service.authorize(conn, scope)
        return identity

    check.chorus_scope = scope  # type: ignore[attr-defined]
    check.__name__ = f"require_{scope}"
    return check


def Requires(scope: Scope) -> Any:
    """``dependencies=[Requires(Scope.ADMIN)]``, or ``Annotated[Identity, Requires(...)]``."""
    return Depends(requirement(scope))
