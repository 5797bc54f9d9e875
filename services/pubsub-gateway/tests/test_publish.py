"""Publishing over HTTP: every type, redaction, refusals of forged, replayed and gap envelopes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chorus_common.envelopes import Envelope, MessageType, new_id
from chorus_common.signing import AgentKey
from chorus_gateway import GatewayService

from .conftest import ADMIN, SigningAgent, as_json

GatewayFixture = tuple[GatewayService, httpx.AsyncClient]


def metric(service: GatewayService, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in service.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total


async def test_every_type_publishes_and_reads_back(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    service, client = gateway
    agent: SigningAgent = await new_agent("agent-all")
    sent = [agent.envelope(t, project="web", thread="th-1") for t in MessageType]
    resp = await client.post("/v1/envelopes:batch", json={"envelopes": [as_json(e) for e in sent]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 31 and body["rejected"] == 0
    seqs = [r["seq"] for r in body["results"]]
    assert all(isinstance(s, int) for s in seqs)

    got: dict[str, Envelope] = {}
    next_seq = 1
    while True:
        page = (
            await client.get(
                "/v1/messages",
                params={
                    "subject": "chorus.>".replace(">", "*.>"),
                    "from_seq": next_seq,
                    "limit": 50,
                },
            )
        ).json()
        for m in page["messages"]:
            env = Envelope.decode(json.dumps(m["envelope"]))
            got.setdefault(env.id, env)
        if not page["messages"]:
            break
        next_seq = page["next_seq"]
    assert {e.id for e in sent} == set(got)
    for env in sent:
        assert got[env.id] == env
    assert metric(service, "chorus_pubsub_published_total", {"type": "task_claim"}) == 1.0


async def test_single_publish_answers_201_with_sequence(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    _, client = gateway
    agent = await new_agent()
    env = agent.envelope(MessageType.EXPERTISE_REQUEST, to_roles=["security"])
    resp = await client.post("/v1/envelopes", json=as_json(env))
    assert resp.status_code == 201, resp.text
    doc = resp.json()
    assert doc["id"] == env.id and doc["seq"] >= 1
    assert "chorus.role.security.expertise_request" in doc["subjects"]


async def test_secret_is_redacted_before_the_stream(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    service, client = gateway
    agent = await new_agent()
    secret = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
    env = agent.envelope(
        MessageType.TASK_HELP_REQUEST,
        {"task_id": "t1", "agent": agent.agent_id, "problem": f"push fails with {secret}"},
    )
    resp = await client.post("/v1/envelopes", json=as_json(env))
    assert resp.status_code == 201
    assert resp.json()["redacted"] == {"github_token": 1}
    stored = await service.bus.jetstream.get_msg("CHORUS_EVENTS", seq=resp.json()["seq"])
    assert secret.encode() not in stored.data
    assert b"[REDACTED:github_token]" in stored.data
    report = (await client.get(f"/v1/feeds/{agent.agent_id}/verify")).json()
    assert report["ok"] and report["length"] == 1  # the redacted envelope still verifies
    assert metric(service, "chorus_shhh_redactions_total", {"pattern": "github_token"}) == 1.0


async def test_forged_replayed_and_gap_envelopes_are_refused(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    service, client = gateway
    agent = await new_agent()
    first = agent.envelope(MessageType.STATUS_UPDATE)
    accepted = await client.post("/v1/envelopes", json=as_json(first))
    assert accepted.status_code == 201

    # a client that lost the answer sends the same envelope again: the original ack, once
    resend = await client.post("/v1/envelopes", json=as_json(first))
    assert resend.status_code == 201, resend.text
    assert resend.json()["duplicate"] is True
    assert resend.json()["seq"] == accepted.json()["seq"]

    second = agent.envelope(MessageType.STATUS_UPDATE)
    assert (await client.post("/v1/envelopes", json=as_json(second))).status_code == 201
    replay = await client.post("/v1/envelopes", json=as_json(first))  # behind the head now
    assert replay.status_code == 201, replay.text  # still the original ack, never stored again
    assert replay.json()["duplicate"] is True
    assert replay.json()["seq"] == accepted.json()["seq"]
    other = first.model_copy(update={"id": new_id(), "sig": None})
    other = other.model_copy(update={"sig": agent.key.sign(bytes.fromhex(other.digest()))})
    fork = await client.post("/v1/envelopes", json=as_json(other))  # another entry at seq 1
    assert fork.status_code == 409 and fork.json()["code"] == "feed_fork"

    forger = AgentKey.generate()
    forged = agent.envelope(MessageType.STATUS_UPDATE)
    forged = forged.model_copy(update={"sig": forger.sign(bytes.fromhex(forged.digest()))})
    bad = await client.post("/v1/envelopes", json=as_json(forged))
    assert bad.status_code == 401 and bad.json()["code"] == "bad_signature"

    agent.envelope(MessageType.STATUS_UPDATE)  # seq 4 is never sent
    gap_env = agent.envelope(MessageType.STATUS_UPDATE)
    gap = await client.post("/v1/envelopes", json=as_json(gap_env))
    assert gap.status_code == 409 and gap.json()["code"] == "feed_gap"
    assert "expected feed_seq 3, got 5" in gap.json()["detail"]

    for reason in ("feed_fork", "bad_signature", "feed_gap"):
        assert metric(service, "chorus_pubsub_rejected_total", {"reason": reason}) == 1.0


async def test_feed_verifier_reports_gaps_forks_and_bad_signatures_in_the_stream(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    """The verifier walks the stored feed; publish raw to the bus to plant each defect."""
    service, client = gateway
    agent = await new_agent("agent-v")
    envs = [agent.envelope(MessageType.STATUS_UPDATE) for _ in range(4)]
    fork = envs[1].model_copy(  # another envelope at seq 2 (its own id, or JetStream dedups it)
        update={"id": new_id(), "payload": envs[1].payload.model_copy(update={"status": "x"})}
    )
    fork = fork.model_copy(update={"sig": agent.key.sign(bytes.fromhex(fork.digest()))})
    tampered = envs[3].model_copy(update={"sig": envs[0].sig})
    for env in (envs[0], envs[1], fork, tampered):  # seq 3 is missing: a gap before seq 4
        await service.bus.publish(env)
    report = (await client.get("/v1/feeds/agent-v/verify")).json()
    kinds = [i["kind"] for i in report["issues"]]
    assert report["ok"] is False
    assert kinds == ["fork", "bad_signature"]
    envs2 = [agent.envelope(MessageType.STATUS_UPDATE) for _ in range(2)]
    await service.bus.publish(envs2[1])  # seq 6 without 5
    report = (await client.get("/v1/feeds/agent-v/verify")).json()
    assert "gap" in [i["kind"] for i in report["issues"]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_envelope"),
        (
            json.dumps({"type": "task_steal", "sender": "agent-1", "payload": {}}),
            422,
            "unknown_type",
        ),
        (
            json.dumps({"type": "task_claim", "sender": "agent-1", "payload": {"task_id": "t"}}),
            422,
            "payload_invalid",
        ),
        (
            json.dumps(
                {
                    "type": "status_update",
                    "sender": "agent 1",
                    "payload": {"agent": "a", "status": "ok"},
                }
            ),
            400,
            "malformed_envelope",
        ),
    ],
)
async def test_bad_input_is_a_named_problem(
    gateway: GatewayFixture, body: bytes | str, status: int, code: str
) -> None:
    service, client = gateway
    resp = await client.post(
        "/v1/envelopes", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == code
    info = await service.bus.jetstream.stream_info("CHORUS_EVENTS")
    assert info.state.messages == 0  # nothing partial reached the stream


async def test_unknown_sender_oversize_and_hop_limit(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    service, client = gateway
    stranger = SigningAgent("stranger", AgentKey.generate(), None)  # type: ignore[arg-type]
    from chorus_common.feeds import FeedWriter

    stranger.writer = FeedWriter("stranger", stranger.key)
    unknown = await client.post(
        "/v1/envelopes", json=as_json(stranger.envelope(MessageType.STATUS_UPDATE))
    )
    assert unknown.status_code == 401 and unknown.json()["code"] == "unknown_key"

    agent = await new_agent()
    big = agent.envelope(
        MessageType.TASK_COMPLETE, {"task_id": "t", "agent": agent.agent_id, "summary": "x" * 4000}
    )
    huge = as_json(big)
    huge["payload"]["artifacts"] = ["y" * 1024] * 1100
    oversize = await client.post("/v1/envelopes", json=huge)
    assert oversize.status_code == 413 and oversize.json()["code"] == "oversize"

    hops = agent.envelope(
        MessageType.META_DISCUSSION, {"content": "fwd", "hop_count": 4, "max_hops": 3}, thread="th"
    )
    refused = await client.post("/v1/envelopes", json=as_json(hops))
    assert refused.status_code == 422 and refused.json()["code"] == "hop_limit_exceeded"
    assert metric(service, "chorus_pubsub_rejected_total", {"reason": "hop_limit_exceeded"}) == 1.0


async def test_batch_keeps_good_items_when_some_are_bad(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    _, client = gateway
    agent = await new_agent()
    good1 = agent.envelope(MessageType.STATUS_UPDATE)
    good2 = agent.envelope(MessageType.STATUS_UPDATE)
    items = [as_json(good1), {"type": "nope", "sender": "x", "payload": {}}, as_json(good2)]
    body = (await client.post("/v1/envelopes:batch", json=items)).json()
    assert [r["ok"] for r in body["results"]] == [True, False, True]
    assert body["results"][1]["error"]["code"] == "unknown_type"


async def test_a_forgery_inside_a_large_batch_is_refused_at_its_place(
    gateway: GatewayFixture, new_agent: Callable[..., Any]
) -> None:
    """Large batches are verified on worker threads: the verdicts still land on the right
    envelopes, and the feed stops at the forgery."""
    _, client = gateway
    agent = await new_agent()
    envs = [agent.envelope(MessageType.STATUS_UPDATE) for _ in range(40)]
    forger = AgentKey.generate()
    envs[19] = envs[19].model_copy(update={"sig": forger.sign(bytes.fromhex(envs[19].digest()))})
    body = (await client.post("/v1/envelopes:batch", json=[as_json(e) for e in envs])).json()
    assert [r["ok"] for r in body["results"]] == [True] * 19 + [False] * 21
    codes = [r["error"]["code"] for r in body["results"][19:]]
    assert codes == ["bad_signature"] + ["feed_gap"] * 20


async def test_publish_needs_a_token_and_batch_size_is_bounded(gateway: GatewayFixture) -> None:
    _, client = gateway
    anonymous = await client.post("/v1/envelopes", json={}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    too_many = await client.post("/v1/envelopes:batch", json=[{}] * 1001)
    assert too_many.status_code == 413


async def test_rate_limit_answers_429_with_retry_after(
    make_settings: Callable[..., Any], redis_server: Any
) -> None:
    from chorus_common.feeds import FeedWriter
    from chorus_common.testing import serve_in_process
    from chorus_gateway.settings import GatewaySettings

    settings = make_settings(
        GatewaySettings,
        gateway_rate_per_second=1.0,
        gateway_rate_burst=3,
        redis_url=redis_server.url,
    )
    a, b = GatewayService(settings), GatewayService(settings)
    async with (
        serve_in_process(a) as url_a,
        serve_in_process(b) as url_b,
        httpx.AsyncClient(headers=ADMIN) as client,
    ):
        key = AgentKey.generate()
        await client.post(f"{url_a}/v1/agents/limited/keys", json={"public_key": key.public_key})
        writer = FeedWriter("limited", key)

        def env() -> dict[str, Any]:
            return as_json(
                writer.seal(
                    Envelope(
                        type="status_update",
                        sender="limited",
                        payload={"agent": "limited", "status": "ok"},
                    )
                )
            )

        codes = []
        for url in (url_a, url_b, url_a):  # the bucket is shared through Redis
            codes.append((await client.post(f"{url}/v1/envelopes", json=env())).status_code)
        limited = await client.post(f"{url_b}/v1/envelopes", json=env())
        assert codes == [201, 201, 201]
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["code"] == "rate_limited"


async def test_types_and_asyncapi(gateway: GatewayFixture) -> None:
    _, client = gateway
    types = (await client.get("/v1/types")).json()
    assert types["count"] == 31
    claim = next(t for t in types["types"] if t["type"] == "task_claim")
    assert "repository" in claim["payload_schema"]["properties"]
    doc = (await client.get("/asyncapi.json")).json()
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "chorus.coord.task_claim" in addresses
    assert "chorus.role.{role}.task_claim" in addresses
    assert len(doc["components"]["messages"]) == 31
    assert (await client.get("/v1/types/nope")).status_code == 404
