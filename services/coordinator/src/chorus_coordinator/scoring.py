"""Scoring agents for a task: a breakdown users can read, a heuristic default, an optional LLM."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

__all__ = [
    "WEIGHTS",
    "AgentProfile",
    "HeuristicScorer",
    "LlmScorer",
    "ScoreCard",
    "Scorer",
    "TaskNeeds",
]

log = logging.getLogger("chorus.coordinator")

WEIGHTS = {
    "capabilities": 0.35,
    "expertise": 0.2,
    "load": 0.2,
    "availability": 0.1,
    "role": 0.05,
    "track_record": 0.1,
}


@dataclass(frozen=True)
class AgentProfile:
    agent: str
    capabilities: frozenset[str] = frozenset()
    expertise: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    current_tasks: int = 0
    max_tasks: int = 1
    status: str = "ready"
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class TaskNeeds:
    task_id: str
    capabilities: frozenset[str] = frozenset()
    expertise: frozenset[str] = frozenset()
    role: str | None = None


@dataclass
class ScoreCard:
    agent: str
    total: float
    breakdown: dict[str, float] = field(default_factory=dict)
    eligible: bool = True
    why_not: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "total": round(self.total, 4),
            "breakdown": {k: round(v, 4) for k, v in self.breakdown.items()},
            "eligible": self.eligible,
            "why_not": self.why_not,
        }


def _coverage(needed: frozenset[str], has: frozenset[str]) -> float:
    return 1.0 if not needed else len(needed & has) / len(needed)


class Scorer(Protocol):
    async def score(self, task: TaskNeeds, agents: list[AgentProfile]) -> list[ScoreCard]: ...


class HeuristicScorer:
    """Capabilities and expertise matched, free capacity, availability, role fit, success rate."""

    def card(self, task: TaskNeeds, a: AgentProfile) -> ScoreCard:
        breakdown = {
            "capabilities": _coverage(task.capabilities, a.capabilities),
            "expertise": _coverage(task.expertise, a.expertise),
            "load": max(0.0, 1 - a.current_tasks / max(1, a.max_tasks)),
            "availability": 1.0 if a.status == "ready" else 0.3 if a.status == "busy" else 0.0,
            "role": 1.0 if task.role is None or task.role in a.roles else 0.0,
            "track_record": (a.completed + 1) / (a.completed + a.failed + 2),
        }
        total = sum(WEIGHTS[k] * v for k, v in breakdown.items())
        why_not = None
        if breakdown["capabilities"] < 1.0:
            why_not = f"missing capabilities {sorted(task.capabilities - a.capabilities)}"
        elif a.current_tasks >= a.max_tasks:
            why_not = f"at capacity ({a.current_tasks}/{a.max_tasks})"
        elif a.status in ("away", "offline"):
            why_not = f"{a.status}"
        return ScoreCard(a.agent, total, breakdown, why_not is None, why_not)

    async def score(self, task: TaskNeeds, agents: list[AgentProfile]) -> list[ScoreCard]:
        cards = [self.card(task, a) for a in agents]
        return sorted(cards, key=lambda c: (not c.eligible, -c.total, c.agent))


class LlmScorer:
    """Asks an OpenAI-compatible endpoint to rank; falls back to the heuristic on any trouble."""

    def __init__(
        self, url: str, model: str, timeout: float = 5.0, api_key: str | None = None
    ) -> None:
        self.url, self.model, self.timeout, self.api_key = url.rstrip("/"), model, timeout, api_key
        self.fallback = HeuristicScorer()
        self.fallbacks = 0

    async def score(self, task: TaskNeeds, agents: list[AgentProfile]) -> list[ScoreCard]:
        cards = await self.fallback.score(task, agents)
        prompt = {
            "task": task.task_id,
            "needs": sorted(task.capabilities | task.expertise),
            "candidates": [c.as_dict() for c in cards if c.eligible],
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.post(
                    f"{self.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
                    json={
                        "model": self.model,
                        "messages": [
                            {
                                "role": "system",
                                "content": 'Rank agents for the task. Answer JSON {"ranking": [agent ids]}',
                            },
                            {"role": "user", "content": json.dumps(prompt)},
                        ],
                    },
                )
                resp.raise_for_status()
                ranking = json.loads(resp.json()["choices"][0]["message"]["content"])["ranking"]
        except Exception as exc:
            self.fallbacks += 1
            log.warning("LLM scorer unavailable (%s); using the heuristic", exc)
            return cards
        order = {agent: i for i, agent in enumerate(ranking)}
        for card in cards:
            card.breakdown["llm_rank"] = float(order.get(card.agent, len(order)))
        return sorted(
            cards, key=lambda c: (not c.eligible, order.get(c.agent, len(order)), -c.total)
        )
