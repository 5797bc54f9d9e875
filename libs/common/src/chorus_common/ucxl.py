"""UCXL addresses: ``ucxl://agent:role@project:task/<temporal>/<path>`` (SPEC.md §9).

The temporal segment has its own position: ``*^`` latest, ``*~`` any,
``*~N`` version N, ``~~N`` N versions back, ``^^N`` N versions forward.
``any`` is a wildcard for agent, role, project or task.

Parsing names the part that is wrong and what it expects, because addresses
are typed by people and agents alike. An address formats back to exactly the
text it was parsed from (the canonical form; the one leniency is that the
``/`` after the temporal segment may be left off when there is no path), so
``key()`` - the 256-bit DHT key - is the same for every copy of an address.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from chorus_common.errors import UcxlAddressError

__all__ = ["LATEST", "Temporal", "TemporalKind", "UcxiVerb", "UcxlAddress", "decision_address"]

SCHEME = "ucxl://"
ANY = "any"
COMPONENTS = ("agent", "role", "project", "task")

# fullmatch everywhere: "$" would also accept a trailing newline
_COMPONENT = re.compile(r"[a-zA-Z0-9_\-]+")
_PATH = re.compile(r"[a-zA-Z0-9_\-/\.]*")
# ASCII digits only (\d would take other scripts' digits), no leading zeros,
# so that every temporal segment has one spelling
_N = r"(0|[1-9][0-9]{0,17})"
_TEMPORAL = re.compile(rf"\*\^|\*~|\*~{_N}|~~{_N}|\^\^{_N}")

TemporalKind = Literal["latest", "any", "version", "back", "forward"]
_NUMBERED: frozenset[str] = frozenset({"version", "back", "forward"})
_TEMPORAL_HELP = "*^ (latest), *~ (any), *~N (version N), ~~N (N back) or ^^N (N forward)"


class UcxiVerb(StrEnum):
    """The UCXI operations on addresses (SPEC.md §9)."""

    GET = "GET"
    PUT = "PUT"
    POST = "POST"
    DELETE = "DELETE"
    ANNOUNCE = "ANNOUNCE"
    NAVIGATE = "NAVIGATE"
    QUERY = "QUERY"
    SUBSCRIBE = "SUBSCRIBE"


@dataclass(frozen=True)
class Temporal:
    """Which version of the addressed content: latest, any, a number, or relative steps."""

    kind: TemporalKind
    n: int | None = None

    def __post_init__(self) -> None:
        if self.kind in _NUMBERED:
            if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 0:
                raise UcxlAddressError(
                    f"temporal {self.kind!r} needs a whole number n >= 0, got {self.n!r}",
                    part="temporal",
                )
        elif self.kind in ("latest", "any"):
            if self.n is not None:
                raise UcxlAddressError(
                    f"temporal {self.kind!r} takes no number, got {self.n!r}", part="temporal"
                )
        else:
            raise UcxlAddressError(
                f"temporal kind {self.kind!r} must be latest, any, version, back or forward",
                part="temporal",
            )

    def __str__(self) -> str:
        match self.kind:
            case "latest":
                return "*^"
            case "any":
                return "*~"
            case "version":
                return f"*~{self.n}"
            case "back":
                return f"~~{self.n}"
            case "forward":
                return f"^^{self.n}"
        raise AssertionError(self.kind)  # pragma: no cover - __post_init__ rules it out

    @classmethod
    def parse(cls, text: str) -> Temporal:
        match = _TEMPORAL.fullmatch(text)
        if match is None:
            raise UcxlAddressError(
                f"temporal segment {text!r} must be {_TEMPORAL_HELP}, "
                f"with N a whole number without leading zeros",
                part="temporal",
            )
        version, back, forward = match.groups()
        if version is not None:
            return cls("version", int(version))
        if back is not None:
            return cls("back", int(back))
        if forward is not None:
            return cls("forward", int(forward))
        return LATEST if text == "*^" else ANY_VERSION


LATEST = Temporal("latest")
ANY_VERSION = Temporal("any")


@dataclass(frozen=True)
class UcxlAddress:
    """A parsed address; construct directly or with :meth:`parse`, both validate."""

    agent: str
    role: str
    project: str
    task: str
    temporal: Temporal = LATEST
    path: str = ""

    def __post_init__(self) -> None:
        for part in COMPONENTS:
            value = getattr(self, part)
            if not isinstance(value, str) or not _COMPONENT.fullmatch(value):
                raise UcxlAddressError(
                    f"{part} {value!r} must match [a-zA-Z0-9_-]+ or 'any'", part=part
                )
        if not isinstance(self.temporal, Temporal):
            raise UcxlAddressError(
                f"temporal {self.temporal!r} must be a Temporal", part="temporal"
            )
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise UcxlAddressError(
                f"path {self.path!r} may contain only letters, digits, '_', '-', '/' and '.'",
                part="path",
            )
        if ".." in self.path.split("/"):
            raise UcxlAddressError(
                f"path {self.path!r} may not contain a '..' segment", part="path"
            )

    @classmethod
    def parse(cls, text: str) -> UcxlAddress:
        """Parse ``ucxl://agent:role@project:task/<temporal>/<path>``."""
        if not isinstance(text, str):
            raise UcxlAddressError(f"address must be a string, got {type(text).__name__}")
        if not text.startswith(SCHEME):
            raise UcxlAddressError(f"address {text!r} must start with {SCHEME}", part="scheme")
        rest = text[len(SCHEME) :]
        authority, slash, tail = rest.partition("/")
        if "@" not in authority:
            raise UcxlAddressError(
                f"address {text!r} needs agent:role@project:task after {SCHEME}",
                part="authority",
            )
        who, _, where = authority.partition("@")
        agent, sep1, role = who.partition(":")
        project, sep2, task = where.partition(":")
        if not sep1:
            raise UcxlAddressError(f"{who!r} must be agent:role (before the '@')", part="role")
        if not sep2:
            raise UcxlAddressError(f"{where!r} must be project:task (after the '@')", part="task")
        if not slash or not tail:
            raise UcxlAddressError(
                f"address {text!r} needs a temporal segment after the task, e.g. /*^/",
                part="temporal",
            )
        temporal_text, _, path = tail.partition("/")
        return cls(agent, role, project, task, Temporal.parse(temporal_text), path)

    def __str__(self) -> str:
        return f"{self.prefix()}{self.temporal}/{self.path}"

    def prefix(self) -> str:
        """``ucxl://agent:role@project:task/``: what listings by agent/role/project/task use."""
        return f"{SCHEME}{self.agent}:{self.role}@{self.project}:{self.task}/"

    def key(self) -> bytes:
        """The DHT key: SHA-256 of the canonical address (32 bytes)."""
        return hashlib.sha256(str(self).encode()).digest()

    @property
    def is_pattern(self) -> bool:
        """Whether this address has wildcards (``any`` or ``*~``) and so names many."""
        return self.temporal.kind == "any" or any(getattr(self, part) == ANY for part in COMPONENTS)

    def with_temporal(self, temporal: Temporal) -> UcxlAddress:
        return UcxlAddress(self.agent, self.role, self.project, self.task, temporal, self.path)

    def matches(self, other: UcxlAddress) -> bool:
        """True if ``other`` falls under this address.

        ``any`` here matches every value there; ``*~`` matches every temporal
        segment; an empty path matches every path, and a path matches itself
        and everything below it (``decisions`` matches ``decisions/x.json`` but
        not ``decisions-old``).
        """
        for part in COMPONENTS:
            mine = getattr(self, part)
            if mine != ANY and mine != getattr(other, part):
                return False
        if self.temporal.kind != "any" and self.temporal != other.temporal:
            return False
        base = self.path.rstrip("/")
        return not base or other.path == self.path or other.path.startswith(base + "/")


def decision_address(author: str, role: str, project: str, task: str, decision_id: str) -> str:
    """Where the DHT's DecisionPublisher (``POST /v1/decisions``) stores a decision record;
    a caller sealing the record binds it to this address."""
    return f"ucxl://{author}:{role}@{project}:{task}/*^/decisions/{decision_id}.json"
