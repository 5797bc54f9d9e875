"""Feeds: a tampered signature, a gap, a fork and a replay are each reported as such."""

import pytest

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import (
    BadSignatureError,
    FeedForkError,
    FeedGapError,
    FeedReplayError,
    UnknownKeyError,
)
from chorus_common.feeds import FeedVerifier, FeedWriter, verify_feed
from chorus_common.signing import AgentKey, verify_signature


def make(n: int, key: AgentKey | None = None) -> tuple[AgentKey, list[Envelope]]:
    key = key or AgentKey.generate()
    writer = FeedWriter("agent-1", key)
    envs = [
        writer.seal(
            Envelope(
                type=MessageType.STATUS_UPDATE,
                sender="agent-1",
                payload={"agent": "agent-1", "status": f"step {i}"},
            )
        )
        for i in range(n)
    ]
    return key, envs


def verifier(key: AgentKey) -> FeedVerifier:
    return FeedVerifier({"agent-1": key.public_key}.get)


def test_good_feed_verifies_and_chains() -> None:
    key, envs = make(5)
    v = verifier(key)
    for env in envs:
        v.check(env)
    assert [e.feed_seq for e in envs] == [1, 2, 3, 4, 5]
    assert envs[1].prev == envs[0].digest()
    report = verify_feed(envs, key.public_key)
    assert report.ok and report.length == 5 and report.head == envs[-1].digest()


def test_tampered_signature() -> None:
    key, envs = make(2)
    tampered = envs[1].model_copy(
        update={"payload": envs[1].payload.model_copy(update={"status": "evil"})}
    )
    v = verifier(key)
    v.check(envs[0])
    with pytest.raises(BadSignatureError):
        v.check(tampered)
    assert verify_feed([envs[0], tampered], key.public_key).kinds() == ["bad_signature"]


def test_wrong_key_and_unknown_sender() -> None:
    _, envs = make(1)
    with pytest.raises(BadSignatureError):
        verifier(AgentKey.generate()).check(envs[0])
    with pytest.raises(UnknownKeyError) as info:
        FeedVerifier(lambda sender: None).check(envs[0])
    assert "POST /v1/agents/agent-1/keys" in info.value.detail


def test_gap() -> None:
    key, envs = make(4)
    v = verifier(key)
    v.check(envs[0])
    with pytest.raises(FeedGapError) as info:
        v.check(envs[2])
    assert "expected feed_seq 2, got 3" in info.value.detail
    assert verify_feed([envs[0], envs[2], envs[3]], key.public_key).kinds() == ["gap"]


def test_fork() -> None:
    key, envs = make(2)
    fork_writer = FeedWriter("agent-1", key)
    fork_writer.seal(envs[0])  # same first entry…
    other = fork_writer.seal(
        Envelope(
            type=MessageType.STATUS_UPDATE,
            sender="agent-1",
            payload={"agent": "agent-1", "status": "different"},
        )
    )
    v = verifier(key)
    v.check(envs[0])
    v.check(envs[1])
    with pytest.raises(FeedForkError):
        v.check(other)  # …then a different second entry at seq 2
    assert verify_feed([envs[0], envs[1], other], key.public_key).kinds() == ["fork"]


def test_replay() -> None:
    key, envs = make(2)
    v = verifier(key)
    v.check(envs[0])
    v.check(envs[1])
    with pytest.raises(FeedReplayError):
        v.check(envs[1])
    assert verify_feed([envs[0], envs[1], envs[1]], key.public_key).kinds() == ["replay"]


def test_state_advances_only_after_every_check() -> None:
    key, envs = make(2)
    v = verifier(key)
    v.check(envs[0])
    bad = envs[1].model_copy(update={"sig": envs[0].sig})
    with pytest.raises(BadSignatureError):
        v.check(bad)
    v.check(envs[1])  # the good one is still accepted


def test_unsigned_envelope() -> None:
    key, _ = make(0)
    env = Envelope(
        type=MessageType.TASK_CLAIM,
        sender="agent-1",
        payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM],
    )
    with pytest.raises(BadSignatureError):
        verifier(key).check(env)


def test_signature_helpers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = AgentKey.generate()
    sig = key.sign(b"hello")
    assert verify_signature(key.public_key, b"hello", sig)
    assert not verify_signature(key.public_key, b"hellO", sig)
    assert not verify_signature("not-a-key", b"hello", sig)
    assert not verify_signature(key.public_key, b"hello", "!!")
    path = tmp_path / "agent.key"
    key.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert AgentKey.load(path).public_key == key.public_key
