"""SHHH: each secret pattern is redacted; ordinary text is left alone."""

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.feeds import FeedVerifier, FeedWriter
from chorus_common.shhh import RedactingFilter, Redactor
from chorus_common.signing import AgentKey

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\nabcdEFGH==\n-----END RSA PRIVATE KEY-----"
)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

CASES = [
    ("aws_access_key_id", "key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_secret_access_key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "github_token",
        "use ghp_1234567890abcdefghijABCDEFGHIJ123456 to push",
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
    ),
    (
        "github_token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    ),
    ("gitlab_token", "token glpat-abcdefghij1234567890", "glpat-abcdefghij1234567890"),
    ("slack_token", "xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl"),
    (
        "slack_webhook",
        "post to https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX now",
        "XXXXXXXXXXXX",
    ),
    ("jwt", f"session {JWT}", JWT),
    ("bearer_token", "Authorization: Bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"),
    ("pem_private_key", f"key:\n{PEM}\nend", "MIIEowIBAAKCAQEA7x"),
    ("url_password", "connect postgres://admin:hunter2secret@db:5432/app", "hunter2secret"),
    ("secret_assignment", "api_key=9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("secret_assignment", '{"password": "correct-horse-battery"}', "correct-horse-battery"),
    ("secret_assignment", "export SECRET=topsecretvalue", "topsecretvalue"),
    ("openai_key", "OPENAI sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwx"),
]


@pytest.mark.parametrize(("pattern", "text", "secret"), CASES)
def test_each_pattern_is_redacted(pattern: str, text: str, secret: str) -> None:
    redactor = Redactor()
    result = redactor.redact_text(text)
    assert secret not in result.text
    assert pattern in {f.pattern for f in result.findings}
    assert f"[REDACTED:{pattern}]" in result.text or "[REDACTED:" in result.text
    assert redactor.counts[pattern] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "Please reset your password via the settings page.",
        "The token bucket refills at 10 per second.",
        "See https://example.com/docs/api for the secret sauce of our design.",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
        "postgres://db:5432/app has no credentials",
        "A bearer of good news arrived.",
        "ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/x.json",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    result = Redactor().redact_text(text)
    assert result.text == text and result.findings == []


def test_user_kept_in_url_password_redaction() -> None:
    text = Redactor().redact_text("redis://worker:pa55word!@cache:6379/0").text
    assert text == "redis://worker:[REDACTED:url_password]@cache:6379/0"


@given(st.text(max_size=300))
def test_redaction_is_idempotent(text: str) -> None:
    redactor = Redactor()
    once = redactor.redact_text(text).text
    assert redactor.redact_text(once).text == once


def test_redacted_envelope_keeps_original_digest_and_still_verifies() -> None:
    key = AgentKey.generate()
    writer = FeedWriter("agent-1", key)
    env = writer.seal(
        Envelope(
            type=MessageType.TASK_HELP_REQUEST,
            sender="agent-1",
            payload={"task_id": "t", "agent": "agent-1", "problem": "my token=abcdef123456 fails"},
        )
    )
    redacted, findings = Redactor().redact_envelope(env)
    assert findings and "abcdef123456" not in redacted.encode().decode()
    assert redacted.redaction is not None
    assert redacted.redaction.original_digest == env.digest()
    assert redacted.redaction.findings == {"secret_assignment": 1}
    FeedVerifier({"agent-1": key.public_key}.get).check(redacted)


def test_clean_envelope_is_returned_unchanged() -> None:
    env = Envelope(
        type=MessageType.STATUS_UPDATE, sender="a", payload={"agent": "a", "status": "ok"}
    )
    same, findings = Redactor().redact_envelope(env)
    assert same is env and findings == []


def test_logs_never_print_secrets(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.shhh")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(logging.Formatter().format(record))  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s", "Bearer abcdef0123456789abcdef")
        try:
            raise RuntimeError("password=hunter2hunter2")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    joined = "\n".join(records)
    assert "abcdef0123456789abcdef" not in joined and "hunter2hunter2" not in joined
    assert "[REDACTED:bearer_token]" in joined
