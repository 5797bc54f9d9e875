"""UCXL addresses: ``ucxl://agent:role@project:task/<temporal>/<path>`` (SPEC.md §9).

Parsing names the part that is wrong and what it expects. ``key()`` is the
256-bit DHT key of an address; ``prefix()`` is what listings by project/task use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from chorus_common.errors import UcxlAddressError

SCHEME = "ucxl://"
_COMPONENT = re.compile(r"^[a-zA-Z0-9_\-]+$")
_PATH = re.compile(r"^[a-zA-Z0-9_\-/\.]*$")
_TEMPORAL = re.compile(r"^(?:\*\^|\*~|\*~(\d+)|~~(\d+)|\^\^(\d+))$")

TemporalKind = Literal["latest", "any", "version", "back", "forward"]


class UcxiVerb(StrEnum):
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
    kind: TemporalKind
    n: int | None = None

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
        raise AssertionError(self.kind)

    @classmethod
    def parse(cls, text: str) -> Temporal:
        match = _TEMPORAL.match(text)
        if match is None:
            raise UcxlAddressError(
                f"temporal segment {text!r} must be one of *^ (latest), *~ (any), *~N (version N), "
                f"~~N (N back), ^^N (N forward)"
            )
        version, back, forward = match.groups()
        if version is not None:
            return cls("version", int(version))
        if back is not None:
            return cls("back", int(back))
        if forward is not None:
            return cls("forward", int(forward))
        return cls("latest") if text == "*^" else cls("any")


LATEST = Temporal("latest")


@dataclass(frozen=True)
class UcxlAddress:
    agent: str
    role: str
    project: str
    task: str
    temporal: Temporal = LATEST
    path: str = ""

    def __post_init__(self) -> None:
        for part in ("agent", "role", "project", "task"):
            value = getattr(self, part)
            if value != "any" and not _COMPONENT.match(value):
                raise UcxlAddressError(
                    f"{part} {value!r} must match [a-zA-Z0-9_-]+ or be 'any'", part=part
                )
        if not _PATH.match(self.path):
            raise UcxlAddressError(
                f"path {self.path!r} may contain only letters, digits, '_', '-', '/' and '.'",
                part="path",
            )
        if any(segment == ".." for segment in self.path.split("/")):
            raise UcxlAddressError(f"path {self.path!r} may not contain '..'", part="path")

    @classmethod
    def parse(cls, text: str) -> UcxlAddress:
        if not text.startswith(SCHEME):
            raise UcxlAddressError(f"address {text!r} must start with {SCHEME}")
        rest = text[len(SCHEME) :]
        authority, _, tail = rest.partition("/")
        if "@" not in authority:
            raise UcxlAddressError(f"address {text!r} needs agent:role@project:task after {SCHEME}")
        who, _, where = authority.partition("@")
        agent, sep1, role = who.partition(":")
        project, sep2, task = where.partition(":")
        if not sep1:
            raise UcxlAddressError(f"'{who}' must be agent:role")
        if not sep2:
            raise UcxlAddressError(f"'{where}' must be project:task")
        if not tail:
            raise UcxlAddressError(
                f"address {text!r} needs a temporal segment after the task, e.g. /*^/"
            )
        temporal_text, _, path = tail.partition("/")
        return cls(agent, role, project, task, Temporal.parse(temporal_text), path)

    def __str__(self) -> str:
        return f"{self.prefix()}{self.temporal}/{self.path}"

    def prefix(self) -> str:
        return f"{SCHEME}{self.agent}:{self.role}@{self.project}:{self.task}/"

    def key(self) -> bytes:
        """The DHT key: SHA-256 of the canonical address."""
        return hashlib.sha256(str(self).encode()).digest()

    def matches(self, other: UcxlAddress) -> bool:
        """True if ``other`` falls under this address, with ``any`` as a wildcard."""
        for part in ("agent", "role", "project", "task"):
            mine = getattr(self, part)
            if mine != "any" and mine != getattr(other, part):
                return False
        if self.temporal.kind != "any" and self.temporal != other.temporal:
            return False
        return (
            not self.path
            or other.path == self.path
            or other.path.startswith(self.path.rstrip("/") + "/")
        )
