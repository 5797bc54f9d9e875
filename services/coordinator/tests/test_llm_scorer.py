"""The LLM scorer against a real OpenAI-compatible HTTP endpoint, and its fallback when it is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from chorus_common.natsserver import free_port
from chorus_common.testing import wait_until
from chorus_coordinator.scoring import AgentProfile, LlmScorer, TaskNeeds

AGENTS = [
    AgentProfile("alpha", frozenset({"python"}), max_tasks=2),
    AgentProfile("beta", frozenset({"python"}), max_tasks=2),
    AgentProfile("gamma", frozenset({"go"}), max_tasks=2),
]
TASK = TaskNeeds("t1", frozenset({"python"}))


@contextlib.asynccontextmanager
async def fake_llm(ranking: list[str]) -> AsyncIterator[str]:
    app = FastAPI()
    asked: list[dict[str, object]] = []

    @app.post("/v1/chat/completions")
    async def complete(body: dict[str, object]) -> dict[str, object]:
        asked.append(body)
        return {"choices": [{"message": {"content": json.dumps({"ranking": ranking})}}]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=10, message="fake LLM up")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
    assert asked, "the scorer asked the endpoint"


async def test_llm_ranking_orders_eligible_agents() -> None:
    async with fake_llm(["beta", "alpha"]) as url:
        cards = await LlmScorer(url, "test-model").score(TASK, AGENTS)
    assert [c.agent for c in cards] == ["beta", "alpha", "gamma"]
    assert cards[0].breakdown["llm_rank"] == 0.0
    assert not cards[-1].eligible and "missing capabilities" in (cards[-1].why_not or "")


async def test_falls_back_to_the_heuristic_when_the_endpoint_is_down() -> None:
    scorer = LlmScorer(f"http://127.0.0.1:{free_port()}", "test-model", timeout=1)
    cards = await scorer.score(TASK, AGENTS)
    assert scorer.fallbacks == 1
    assert [c.agent for c in cards][:2] == ["alpha", "beta"]  # heuristic: tie broken by id
    assert "llm_rank" not in cards[0].breakdown
