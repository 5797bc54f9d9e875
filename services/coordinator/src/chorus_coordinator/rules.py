"""Dependency detection across repositories (SPEC.md §3, §10): four rules, plus custom ones."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BUILTIN_RULES",
    "Dependency",
    "DependencyRule",
    "TaskView",
    "detect",
    "parse_custom_rules",
]


@dataclass(frozen=True)
class TaskView:
    """What the rules look at: tasks are keyed ``project:task`` and belong to a repository."""

    key: str
    repository: str
    title: str
    description: str = ""
    labels: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join((self.title, self.description, " ".join(self.labels))).lower()


@dataclass(frozen=True)
class DependencyRule:
    name: str
    keywords: tuple[str, ...]
    reason: str
    confidence: float = 0.8

    def _mentions(self, task: TaskView) -> bool:
        return any(re.search(rf"\b{re.escape(k)}", task.text) for k in self.keywords)

    def matches(self, a: TaskView, b: TaskView) -> bool:
        return self._mentions(a) and self._mentions(b)


BUILTIN_RULES: tuple[DependencyRule, ...] = (
    DependencyRule(
        "API_Contract",
        ("api", "endpoint", "contract"),
        "API definition and implementation dependency",
    ),
    DependencyRule(
        "Database_Schema",
        ("database", "schema", "migration", "table"),
        "Database schema dependency detected",
    ),
    DependencyRule(
        "Configuration_Dependency",
        ("config", "environment"),
        "Configuration dependency - coordinated changes needed",
    ),
    DependencyRule(
        "Security_Compliance",
        ("security", "auth", "permission", "token"),
        "Security implementation requires coordination",
    ),
)


@dataclass(frozen=True)
class Dependency:
    rule: str
    confidence: float
    reason: str
    task_a: str
    task_b: str
    repositories: tuple[str, str]


def detect(
    new: TaskView, known: list[TaskView], rules: tuple[DependencyRule, ...] = BUILTIN_RULES
) -> list[Dependency]:
    """Every rule match between ``new`` and a task of *another* repository."""
    found = []
    for other in known:
        if other.key == new.key or other.repository == new.repository:
            continue  # same-repository pairs are left to single-repo coordination
        for rule in rules:
            if rule.matches(new, other):
                found.append(
                    Dependency(
                        rule.name,
                        rule.confidence,
                        rule.reason,
                        new.key,
                        other.key,
                        (new.repository, other.repository),
                    )
                )
    return found


def parse_custom_rules(text: str) -> tuple[DependencyRule, ...]:
    """``name:kw1|kw2:reason;...`` from CHORUS_COORDINATOR_CUSTOM_RULES."""
    rules = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, keywords, reason = ([*part.split(":", 2), "", ""])[:3]
        if not name or not keywords:
            raise ValueError(f"custom rule {part!r} must be name:kw1|kw2:reason")
        rules.append(
            DependencyRule(
                name,
                tuple(k.strip().lower() for k in keywords.split("|")),
                reason or f"{name} dependency",
            )
        )
    return tuple(rules)
