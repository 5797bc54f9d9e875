"""Feeds: a tampered signature, a gap, a fork and a replay are each reported as such."""

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.envelopes import Envelope, MessageType, Redaction
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.errors import (
    BadSignatureError,
    FeedError,
    FeedForkError,
    FeedGapError,
    FeedReplayError,
    UnknownKeyError,
)
from chorus_common.feeds import FeedState, FeedVerifier, FeedWriter, verify_feed
from chorus_common.shhh import Redactor
from chorus_common.signing import AgentKey

AGENT = "agent-1"


def status(text: str) -> Envelope:
    return Envelope(
        type=MessageType.STATUS_UPDATE, sender=AGENT, payload={"agent": AGENT, "status": text}
    )


def make(n: int, key: AgentKey | None = None) -> tuple[AgentKey, list[Envelope]]:
    key = key or AgentKey.generate()
    writer = FeedWriter(AGENT, key)
    return key, [writer.seal(status(f"step {i}")) for i in range(n)]


def verifier(key: AgentKey, memory: int = 10_000, accept_redacted: bool = False) -> FeedVerifier:
    return FeedVerifier({AGENT: key.public_key}.get, memory, accept_redacted=accept_redacted)


def resigned(env: Envelope, key: AgentKey, **update: object) -> Envelope:
    """A validly signed envelope with some fields changed (the key holder misbehaving)."""
    changed = env.model_copy(update={**update, "sig": None})
    return changed.model_copy(update={"sig": key.sign(bytes.fromhex(changed.digest()))})


# -- writer ---------------------------------------------------------------------------


def test_good_feed_verifies_and_chains() -> None:
    key, envs = make(5)
    v = verifier(key)
    for env in envs:
        v.check(env)
    assert [e.feed_seq for e in envs] == [1, 2, 3, 4, 5]
    assert envs[0].prev is None
    assert all(b.prev == a.digest() for a, b in pairwise(envs))
    assert v.state(AGENT) == FeedState(seq=5, head=envs[-1].digest())
    report = verify_feed(envs, key.public_key)
    assert report.ok and report.length == 5 and report.head == envs[-1].digest()
    assert report.issues == []


def test_seal_sets_sender_and_drops_old_sig_and_redaction() -> None:
    key = AgentKey.generate()
    env = status("x").model_copy(
        update={
            "sender": "someone-else",
            "sig": "bogus",
            "redaction": Redaction(original_digest="0" * 64, findings={}),
        }
    )
    sealed = FeedWriter(AGENT, key).seal(env)
    assert sealed.sender == AGENT and sealed.redaction is None
    assert env.sig == "bogus"  # the input is not modified
    verifier(key).check(sealed)


def test_writer_state_persists_and_resumes() -> None:
    key = AgentKey.generate()
    writer = FeedWriter(AGENT, key)
    first = [writer.seal(status(str(i))) for i in range(3)]
    state = writer.state
    assert state == FeedState(seq=3, head=first[-1].digest())
    # both spellings of "continue from here"
    for resumed in (FeedWriter(AGENT, key, state.seq, state.head), FeedWriter(AGENT, key, state)):
        nxt = resumed.seal(status("next"))
        assert nxt.feed_seq == 4 and nxt.prev == first[-1].digest()
    v = verifier(key)
    for env in [*first, nxt]:
        v.check(env)


def test_writer_and_state_refuse_nonsense() -> None:
    key = AgentKey.generate()
    with pytest.raises(ValueError, match="agent id"):
        FeedWriter("bad agent", key)
    with pytest.raises(ValueError):
        FeedState(seq=2, head=None)
    with pytest.raises(ValueError):
        FeedState(seq=0, head="a" * 64)
    with pytest.raises(ValueError):
        FeedState(seq=1, head="not-hex")


# -- bad signature ----------------------------------------------------------------------


def test_tampered_payload_is_a_bad_signature() -> None:
    key, envs = make(2)
    tampered = envs[1].model_copy(
        update={"payload": envs[1].payload.model_copy(update={"status": "evil"})}
    )
    v = verifier(key)
    v.check(envs[0])
    with pytest.raises(BadSignatureError) as info:
        v.check(tampered)
    assert info.value.status == 401 and "feed_seq 2" in info.value.detail
    report = verify_feed([envs[0], tampered], key.public_key)
    assert report.kinds() == ["bad_signature"] and report.issues[0].seq == 2


def test_tampered_signature_is_a_bad_signature() -> None:
    key, envs = make(2)
    sig = envs[1].sig
    assert sig is not None
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    tampered = envs[1].model_copy(update={"sig": flipped})
    v = verifier(key)
    v.check(envs[0])
    with pytest.raises(BadSignatureError):
        v.check(tampered)
    assert verify_feed([envs[0], tampered, envs[1]], key.public_key).kinds() == ["bad_signature"]


def test_wrong_key_and_unknown_sender() -> None:
    _, envs = make(1)
    with pytest.raises(BadSignatureError):
        verifier(AgentKey.generate()).check(envs[0])
    with pytest.raises(UnknownKeyError) as info:
        FeedVerifier(lambda sender: None).check(envs[0])
    assert "POST /v1/agents/agent-1/keys" in info.value.detail
    assert info.value.code == "unknown_key"


def test_unsigned_envelope() -> None:
    key = AgentKey.generate()
    env = Envelope(
        type=MessageType.TASK_CLAIM, sender=AGENT, payload=SAMPLE_PAYLOADS[MessageType.TASK_CLAIM]
    )
    with pytest.raises(BadSignatureError, match="not signed into a feed"):
        verifier(key).check(env)
    assert verify_feed([env], key.public_key).kinds() == ["bad_signature"]


# -- gap ----------------------------------------------------------------------------------


def test_gap() -> None:
    key, envs = make(4)
    v = verifier(key)
    v.check(envs[0])
    with pytest.raises(FeedGapError) as info:
        v.check(envs[2])
    assert "expected feed_seq 2, got 3" in info.value.detail
    assert info.value.code == "feed_gap" and info.value.status == 409
    report = verify_feed([envs[0], envs[2], envs[3]], key.public_key)
    assert report.kinds() == ["gap"] and report.issues[0].seq == 3
    assert "feed_seq 2 missing" in report.issues[0].detail


def test_feed_must_start_at_one_unless_trusted_from_later() -> None:
    key, envs = make(4)
    with pytest.raises(FeedGapError, match="starts at feed_seq 3; expected 1"):
        verifier(key).check(envs[2])
    v = verifier(key)
    v.trust_from(AGENT, 2, envs[1].digest())
    v.check(envs[2])
    v.check(envs[3])
    with pytest.raises(FeedReplayError):
        v.check(envs[1])  # the trusted position itself counts as accepted


def test_prev_that_does_not_link_is_a_gap() -> None:
    key, envs = make(3)
    unlinked = resigned(envs[2], key, prev="f" * 64)
    v = verifier(key)
    v.check(envs[0])
    v.check(envs[1])
    with pytest.raises(FeedGapError) as info:
        v.check(unlinked)
    assert "does not link at feed_seq 3" in info.value.detail
    assert info.value.extra["reason"] == "broken_link"
    assert verify_feed([envs[0], envs[1], unlinked], key.public_key).kinds() == ["broken_link"]
    first_with_prev = resigned(envs[0], key, prev="e" * 64)
    with pytest.raises(FeedGapError, match="must not have a prev"):
        verifier(key).check(first_with_prev)


# -- fork ---------------------------------------------------------------------------------


def test_fork() -> None:
    key, envs = make(2)
    fork_writer = FeedWriter(AGENT, key)
    fork_writer.seal(envs[0])  # same first entry…
    other = fork_writer.seal(status("different"))  # …then a different second entry
    assert other.feed_seq == 2 and other.digest() != envs[1].digest()
    v = verifier(key)
    v.check(envs[0])
    v.check(envs[1])
    with pytest.raises(FeedForkError) as info:
        v.check(other)
    assert "forks at feed_seq 2" in info.value.detail and info.value.code == "feed_fork"
    assert verify_feed([envs[0], envs[1], other], key.public_key).kinds() == ["fork"]


# -- replay ---------------------------------------------------------------------------------


def test_replay() -> None:
    key, envs = make(2)
    v = verifier(key)
    v.check(envs[0])
    v.check(envs[1])
    for again in (envs[1], envs[0]):
        with pytest.raises(FeedReplayError) as info:
            v.check(again)
        assert info.value.code == "feed_replay" and info.value.status == 409
    assert verify_feed([envs[0], envs[1], envs[1]], key.public_key).kinds() == ["replay"]


def test_replay_older_than_memory_is_still_refused() -> None:
    key, envs = make(6)
    v = verifier(key, memory=2)
    for env in envs:
        v.check(env)
    assert len(v.senders[AGENT].digests) == 2  # bounded
    with pytest.raises(FeedReplayError, match="older than the 2 entries remembered"):
        v.check(envs[0])


def test_feed_replay_error_is_in_the_tree() -> None:
    assert issubclass(FeedReplayError, FeedError)
    assert FeedReplayError("x").to_problem()["code"] == "feed_replay"


# -- state only advances after every check ------------------------------------------------


def test_state_advances_only_after_every_check() -> None:
    key, envs = make(3)
    v = verifier(key)
    v.check(envs[0])
    before = v.state(AGENT)
    for bad in (
        envs[1].model_copy(update={"sig": envs[0].sig}),  # bad signature
        envs[2],  # gap
        resigned(envs[1], key, prev="f" * 64),  # does not link
    ):
        with pytest.raises(FeedError):
            v.check(bad)
        assert v.state(AGENT) == before
    v.check(envs[1])  # the good ones are still accepted
    v.check(envs[2])


def test_senders_are_independent() -> None:
    key_a, key_b = AgentKey.generate(), AgentKey.generate()
    a = FeedWriter("a", key_a).seal(status("x"))
    b = FeedWriter("b", key_b).seal(status("y"))
    v = FeedVerifier({"a": key_a.public_key, "b": key_b.public_key}.get)
    v.check(a)
    v.check(b)
    assert v.state("a") != v.state("b")
    v.forget("a")
    v.check(a)  # forgotten: seq 1 is new again


# -- redaction ----------------------------------------------------------------------------------


def test_redacted_envelope_still_verifies() -> None:
    key = AgentKey.generate()
    writer = FeedWriter(AGENT, key)
    first = writer.seal(status("fine"))
    leaky = writer.seal(status("deploying with token=abcdef1234567890"))
    third = writer.seal(status("done"))
    redacted, findings = Redactor().redact_envelope(leaky)
    assert findings and "abcdef1234567890" not in redacted.model_dump_json()
    assert redacted.digest() == leaky.digest() != redacted.content_digest()
    trusting = verifier(key, accept_redacted=True)
    for env in (first, redacted, third):
        trusting.check(env)  # the next entry still links to the redacted one
    report = verify_feed([first, redacted, third], key.public_key)
    assert report.ok and report.head == third.digest()


def test_ingress_refuses_redaction_records_by_default() -> None:
    """A redacted payload is not covered by the signature, so only a trusted redactor may
    make one: otherwise anyone could pair an old signature with a new payload."""
    key, envs = make(1)
    forged = envs[0].model_copy(
        update={
            "payload": envs[0].payload.model_copy(update={"status": "attacker's words"}),
            "redaction": Redaction(original_digest=envs[0].digest(), findings={"x": 1}),
        }
    )
    with pytest.raises(BadSignatureError, match="redaction record"):
        verifier(key).check(forged)
    assert verify_feed([forged], key.public_key, accept_redacted=False).kinds() == ["bad_signature"]


def test_bogus_original_digest_is_a_bad_signature_not_a_crash() -> None:
    key, envs = make(1)
    bogus = envs[0].model_copy(
        update={"redaction": Redaction(original_digest="zz", findings={"x": 1})}
    )
    with pytest.raises(BadSignatureError):
        verifier(key, accept_redacted=True).check(bogus)
    assert verify_feed([bogus], key.public_key).kinds() == ["bad_signature"]


# -- verify_feed walks everything ----------------------------------------------------------


def test_verify_feed_reports_every_issue_in_one_walk() -> None:
    key, envs = make(8)
    fork = resigned(envs[2], key, payload=envs[2].payload.model_copy(update={"status": "fork"}))
    tampered = envs[4].model_copy(update={"sig": envs[3].sig})
    broken = resigned(envs[7], key, prev="a" * 64)
    stream = [envs[0], envs[1], envs[2], fork, envs[2], envs[3], tampered, envs[6], broken]
    report = verify_feed(stream, key.public_key)
    assert not report.ok and report.length == len(stream)
    assert [(i.kind, i.seq) for i in report.issues] == [
        ("fork", 3),
        ("replay", 3),
        ("bad_signature", 5),
        ("gap", 7),
        ("broken_link", 8),
    ]
    assert report.head == broken.digest()


def test_verify_feed_takes_envelopes_in_seq_order() -> None:
    key, envs = make(5)
    report = verify_feed(list(reversed(envs)), key.public_key)
    assert report.ok and report.head == envs[-1].digest()


def test_verify_feed_of_nothing() -> None:
    report = verify_feed([], AgentKey.generate().public_key)
    assert report.ok and report.length == 0 and report.head is None


_KEY, _FEED = make(12)


@settings(max_examples=50, deadline=None)
@given(order=st.permutations(range(12)))
def test_any_arrival_order_of_a_good_feed_verifies(order: list[int]) -> None:
    assert verify_feed([_FEED[i] for i in order], _KEY.public_key).ok


@settings(max_examples=30, deadline=None)
@given(dropped=st.integers(min_value=1, max_value=10))
def test_dropping_one_entry_is_exactly_one_gap(dropped: int) -> None:
    remaining = _FEED[:dropped] + _FEED[dropped + 1 :]
    report = verify_feed(remaining, _KEY.public_key)
    assert [(i.kind, i.seq) for i in report.issues] == [("gap", dropped + 2)]
    v = verifier(_KEY)
    with pytest.raises(FeedGapError):
        for env in remaining:
            v.check(env)
