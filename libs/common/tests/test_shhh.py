"""SHHH: each secret pattern is redacted; ordinary text is left alone.

Secrets are assembled at run time so this file itself holds nothing a secret
scanner would flag.
"""

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.logs import JsonFormatter
from chorus_common.shhh import PATTERN_NAMES, PATTERNS, RedactingFilter, Redactor, marker

ALNUM = "a1B2c3D4e5F6g7H8i9J0"
AWS_ID = "AKIA" + "IOSFODNN7EXAMPL" + "E"
AWS_STS_ID = "ASIA" + "Y34FZKBOKMUTVV7A"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
GH = {p: f"{p}_" + (ALNUM * 2)[:36] for p in ("ghp", "gho", "ghu", "ghs", "ghr")}
GH_PAT = "github_pat_" + "11ABCDEFG0" + "123456789_" + "abcdefghijklmnopqrstuvwxyz"
GLPAT = "glpat-" + "xYz12AbC" + "de34FgHi56jk"
SLACK = {c: f"xox{c}-" + "123456789012-" + "AbCdEfGhIjKl" for c in "baprs"}
HOOK = "https://hooks.slack.com/services/" + "T0001/B0002/" + "XXXXXXXXXXXXXXXXXXXXXXXX"
JWT = (
    "eyJhbGciOiJIUzI1NiJ9"
    + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
OPENAI = "sk-" + "proj-" + "Ab3dEf6hIj9lMn2pQr5tUv8x"
OPENAI_LEGACY = "sk-" + ALNUM + "T3BlbkFJ" + ALNUM
PEM_BODY = "MIIEowIBAAKCAQEA7x" + "abcdEFGH=="
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + PEM_BODY + "\nqrstUVWX\n-----END RSA PRIVATE KEY-----"
PEM_PKCS8 = "-----BEGIN PRIVATE KEY-----\n" + PEM_BODY + "\n-----END PRIVATE KEY-----"
PEM_ESCAPED = PEM.replace("\n", "\\n")  # as it appears inside a JSON string
BEARER = "abcdef" + "0123456789abcdef"

# (pattern, text, secret): one case per listed pattern and spelling
CASES: list[tuple[str, str, str]] = [
    ("aws_access_key_id", f"key {AWS_ID} here", AWS_ID),
    ("aws_access_key_id", f"AWS_ACCESS_KEY_ID={AWS_STS_ID}", AWS_STS_ID),
    ("aws_secret_access_key", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ("aws_secret_access_key", f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    ("aws_secret_access_key", f'{{"SecretAccessKey": "{AWS_SECRET}"}}', AWS_SECRET),
    *[("github_token", f"use {token} to push", token) for token in GH.values()],
    ("github_token", f"GITHUB_TOKEN={GH_PAT}", GH_PAT),
    ("gitlab_token", f"private token {GLPAT} for CI", GLPAT),
    *[("slack_token", f"slack: {token}", token) for token in SLACK.values()],
    ("slack_webhook", f"post to {HOOK} now", HOOK.rsplit("/", 1)[1]),
    ("jwt", f"session {JWT}", JWT),
    ("jwt", f"cookie: sid={JWT}; Path=/", JWT),
    ("bearer_token", f"Authorization: Bearer {BEARER}", BEARER),
    ("bearer_token", "authorization: bearer short-tok", "short-tok"),
    ("bearer_token", f'{{"Authorization": "Bearer {BEARER}"}}', BEARER),
    ("bearer_token", f"curl -H 'Bearer {BEARER}' https://api", BEARER),
    ("pem_private_key", f"key:\n{PEM}\nend", PEM_BODY),
    ("pem_private_key", f"key:\n{PEM_PKCS8}", PEM_BODY),
    ("pem_private_key", '{"key": "' + PEM_ESCAPED + '"}', PEM_BODY),
    ("pem_private_key", "-----BEGIN EC PRIVATE KEY-----\n" + PEM_BODY + "\n(cut)", PEM_BODY),
    ("url_password", "connect postgres://admin:hunter2secret@db:5432/app", "hunter2secret"),
    ("url_password", "redis://:s3cr3t-pw@cache:6379/0", "s3cr3t-pw"),
    ("url_password", "AMQP_URL=amqps://user:p%40ss%3Aword@mq.local/vhost", "p%40ss%3Aword"),
    ("secret_assignment", "api_key=9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("secret_assignment", "apikey: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("secret_assignment", "X-API-Key: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
    ("secret_assignment", "password=hunter2hunter2", "hunter2hunter2"),
    ("secret_assignment", "DB_PASSWORD=hunter2hunter2", "hunter2hunter2"),
    ("secret_assignment", '{"password": "correct horse battery"}', "correct horse battery"),
    ("secret_assignment", "{'passwd': 'tr0ub4dor&3'}", "tr0ub4dor&3"),
    ("secret_assignment", "export SECRET=topsecretvalue", "topsecretvalue"),
    ("secret_assignment", 'client_secret: "s3cr3t-value"', "s3cr3t-value"),
    ("secret_assignment", "token=abcdef123456", "abcdef123456"),
    ("secret_assignment", '"access_token":"ya29.a0AfH6SMB"', "ya29.a0AfH6SMB"),
    ("secret_assignment", "settings.auth_token = 'q1w2e3r4t5'", "q1w2e3r4t5"),
    ("secret_assignment", '{\\"api_key\\": \\"k3y value\\"}', "k3y value"),
    ("secret_assignment", "Password=Pa55w0rd;Server=db", "Pa55w0rd"),
    ("openai_key", f"OPENAI_API_KEY is {OPENAI}", OPENAI),
    ("openai_key", f"key {OPENAI_LEGACY}", OPENAI_LEGACY),
    ("basic_auth", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
]


@pytest.mark.parametrize(("pattern", "text", "secret"), CASES)
def test_each_pattern_is_redacted(pattern: str, text: str, secret: str) -> None:
    redactor = Redactor()
    result = redactor.redact_text(text)
    assert secret not in result.text
    assert pattern in {f.pattern for f in result.findings}
    assert marker(pattern) in result.text
    assert redactor.counts[pattern] >= 1
    for finding in result.findings:  # offsets index the input
        assert 0 <= finding.start < finding.end <= len(text)
        assert finding.severity in ("low", "medium", "high", "critical")


def test_every_pattern_has_a_case() -> None:
    assert set(PATTERN_NAMES) == {case[0] for case in CASES}


@pytest.mark.parametrize(
    "text",
    [
        "Please reset your password via the settings page.",
        "password reset email sent",
        "The token bucket refills at 10 per second.",
        "See https://example.com/docs/api for the secret sauce of our design.",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
        "postgres://db:5432/app has no credentials",
        "ssh://git@github.com/org/repo.git and https://alice@example.com/x",
        "https://example.com:8443/path?next=a@b",
        "mail alice@example.com at 10:30",
        "A bearer of good news arrived.",
        "ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/x.json",
        "UCXL://gpt4:architect@chorus:v2-migration/*^/decisions/x.json",
        "id 0190a9c6-7e4b-7b3e-8f5d-2b9c1d3e4f5a, ulid 01J2Y8Z3N4P5Q6R7S8T9V0W1X2",
        "max_tokens=100000, token_count: 123456, tokens: 42",
        "PWD=/home/dev/project",
        "we use sk-learn-compatible-estimators for ranking",
        "the api key rotation is scheduled; secret management docs",
        "token_type: bearer",
        "key: value",
        "password: ",
        "arn:aws:iam::123456789012:role/deploy",
        "ASIAN markets and AKIA are words",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    result = Redactor().redact_text(text)
    assert result.text == text and result.findings == []


def test_user_kept_in_url_password_redaction() -> None:
    text = Redactor().redact_text("redis://worker:pa55word!@cache:6379/0").text
    assert text == "redis://worker:[REDACTED:url_password]@cache:6379/0"


def test_name_kept_in_assignment_redaction() -> None:
    text = Redactor().redact_text('DB_PASSWORD="hunter 2" next').text
    assert text == 'DB_PASSWORD="[REDACTED:secret_assignment]" next'


def test_specific_pattern_wins_over_generic() -> None:
    result = Redactor().redact_text(f"GITHUB_TOKEN={GH['ghp']} and password={OPENAI}")
    assert [f.pattern for f in result.findings] == ["github_token", "openai_key"]


def test_several_secrets_in_one_text_with_offsets() -> None:
    text = f"a {AWS_ID} b {JWT} c token=zzzzzz9 d"
    result = Redactor().redact_text(text)
    assert [text[f.start : f.end] for f in result.findings] == [AWS_ID, JWT, "zzzzzz9"]
    assert result.text == (
        f"a {marker('aws_access_key_id')} b {marker('jwt')} c token={marker('secret_assignment')} d"
    )


def test_counts_accumulate() -> None:
    redactor = Redactor()
    redactor.redact_text(f"{AWS_ID} {AWS_STS_ID}")
    redactor.redact_text(JWT)
    redactor.redact_text("nothing here")
    assert redactor.counts == {"aws_access_key_id": 2, "jwt": 1}


def test_patterns_have_hints_and_severities() -> None:
    for pattern in PATTERNS:
        assert pattern.hints and all(h == h.lower() for h in pattern.hints)


# -- idempotence and "no secret survives" -----------------------------------------------------

FRAGMENTS = [
    AWS_ID,
    AWS_SECRET,
    GH["ghp"],
    GH_PAT,
    GLPAT,
    SLACK["b"],
    HOOK,
    JWT,
    OPENAI,
    PEM,
    BEARER,
    "password",
    "DB_PASSWORD",
    "api_key",
    "token",
    "secret",
    "aws_secret_access_key",
    "Authorization:",
    "Bearer",
    "Basic",
    "postgres://u",
    "://",
    ":",
    "=",
    "@",
    '"',
    "'",
    "\\",
    '\\"',
    " ",
    "\n",
    ";",
    "/",
    "[REDACTED:jwt]",
    "[REDACTED:",
    "]",
    "hunter2hunter2",
    "ucxl://a:b@c:d/*^/",
]
mixed_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=25).map(
    "".join
)


@given(st.text(max_size=300))
def test_redaction_is_idempotent_on_any_text(text: str) -> None:
    redactor = Redactor()
    once = redactor.redact_text(text).text
    assert redactor.redact_text(once).text == once


@settings(max_examples=400)
@given(mixed_text)
def test_redaction_is_idempotent_on_secret_laden_text(text: str) -> None:
    redactor = Redactor()
    once = redactor.redact_text(text)
    twice = redactor.redact_text(once.text)
    assert twice.text == once.text and twice.findings == []


SECRETS = [(case[1], case[2]) for case in CASES]


@settings(max_examples=200)
@given(
    prose=st.lists(st.sampled_from(["the", "deploy", "failed", "42", "ok.", "x=1"]), max_size=6),
    chosen=st.lists(st.sampled_from(SECRETS), min_size=1, max_size=4),
    seps=st.sampled_from([" ", "\n", " | "]),
)
def test_no_secret_survives_in_mixed_text(
    prose: list[str], chosen: list[tuple[str, str]], seps: str
) -> None:
    text = seps.join([*prose, *(case for case, _ in chosen), *prose])
    out = Redactor().redact_text(text).text
    for _, secret in chosen:
        assert secret not in out


def test_clean_text_is_cheap() -> None:
    """Big clean text costs a lower() and a few substring tests, no regex."""
    redactor = Redactor()
    text = "the quick brown fox jumps over the lazy dog " * 20_000
    assert redactor.redact_text(text).text is text


# -- values and envelopes ----------------------------------------------------------------------


def test_redact_value_recurses_and_names_paths() -> None:
    value = {
        "note": f"uses {AWS_ID}",
        "items": [{"text": "fine"}, {"text": f"jwt {JWT}"}],
        "pair": ("ok", "password=hunter2hunter2"),
        "n": 3,
        "flag": None,
        f"{AWS_ID}": "keys are names, not data",
    }
    out, findings = Redactor().redact_value(value)
    assert AWS_ID not in out["note"] and JWT not in out["items"][1]["text"]
    assert out["pair"] == ("ok", f"password={marker('secret_assignment')}")
    assert out["n"] == 3 and out["flag"] is None and out["items"][0] == {"text": "fine"}
    assert sorted(f.path for f in findings) == ["items.1.text", "note", "pair.1"]


def help_request(problem: str) -> Envelope:
    return Envelope(
        type=MessageType.TASK_HELP_REQUEST,
        sender="agent-1",
        payload={"task_id": "t-1", "agent": "agent-1", "problem": problem},
    )


def test_redact_envelope_records_the_original_digest() -> None:
    env = help_request(f"login with {GH['ghp']} fails; password=hunter2hunter2")
    redacted, findings = Redactor().redact_envelope(env)
    dumped = redacted.model_dump_json()
    assert GH["ghp"] not in dumped and "hunter2hunter2" not in dumped
    assert type(redacted.payload) is type(env.payload)
    assert redacted.redaction is not None
    assert redacted.redaction.original_digest == env.digest() == redacted.digest()
    assert redacted.redaction.findings == {"github_token": 1, "secret_assignment": 1}
    assert {f.path for f in findings} == {"problem"}
    # nothing but the payload changed
    assert redacted.model_dump(exclude={"payload", "redaction"}) == env.model_dump(
        exclude={"payload", "redaction"}
    )
    assert Envelope.decode(redacted.encode()) == redacted


def test_second_redaction_keeps_the_first_digest_and_adds_counts() -> None:
    env = help_request(f"key {AWS_ID}")
    once, _ = Redactor().redact_envelope(env)
    patched = once.model_copy(
        update={"payload": once.payload.model_copy(update={"problem": f"also {JWT}"})}
    )
    twice, _ = Redactor().redact_envelope(patched)
    assert twice.redaction is not None
    assert twice.redaction.original_digest == env.digest()
    assert twice.redaction.findings == {"aws_access_key_id": 1, "jwt": 1}


def test_clean_envelope_is_returned_unchanged() -> None:
    env = Envelope(
        type=MessageType.STATUS_UPDATE, sender="a", payload={"agent": "a", "status": "ok"}
    )
    same, findings = Redactor().redact_envelope(env)
    assert same is env and findings == []
    again, _ = Redactor().redact_envelope(Redactor().redact_envelope(help_request(JWT))[0])
    assert again.redaction is not None and again.redaction.findings == {"jwt": 1}


def test_a_marker_longer_than_its_field_allows_is_cut_to_fit() -> None:
    status = "x" * 186 + " token=abcdef1"  # 200 characters, the field's limit
    env = Envelope(
        type=MessageType.STATUS_UPDATE, sender="a", payload={"agent": "a", "status": status}
    )
    redacted, findings = Redactor().redact_envelope(env)
    assert findings and "abcdef1" not in redacted.model_dump_json()
    assert len(redacted.payload.model_dump()["status"]) == 200


# -- logs ----------------------------------------------------------------------------------------


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, list[str], logging.Handler]:
    logger = logging.getLogger("test.shhh")
    records: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(formatter)
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, records, handler


@pytest.mark.parametrize("formatter", [logging.Formatter(), JsonFormatter("test")])
def test_logs_never_print_secrets(formatter: logging.Formatter) -> None:
    logger, records, handler = capture(formatter)
    try:
        logger.warning("connecting with %s", f"Bearer {BEARER}")
        logger.info("config %r", {"password": "hunter2hunter2"})
        logger.info("bad format %s %s", JWT)  # one argument short: still no secret
        try:
            raise RuntimeError(f"login failed for {GH['ghp']}")
        except RuntimeError:
            logger.exception("failed")
        logger.warning("stack", stack_info=True, extra={})
        logger.info("plain message without secrets")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    joined = "\n".join(records)
    for secret in (BEARER, "hunter2hunter2", JWT, GH["ghp"]):
        assert secret not in joined
    assert marker("bearer_token") in joined
    assert "plain message without secrets" in joined
    if isinstance(formatter, JsonFormatter):
        for line in records:
            json.loads(line)


def test_tracebacks_without_secrets_keep_exc_info() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
    try:
        raise ValueError("nothing secret")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter(Redactor()).filter(record)
    assert record.exc_info is not None and "nothing secret" in (record.exc_text or "")


def test_secret_glued_to_another_is_found_with_input_offsets() -> None:
    """``KEYhttps://…`` has no word boundary before the URL is redacted: a second scan
    finds the key, and its offsets still index the input."""
    text = AWS_ID + HOOK + " ok"
    result = Redactor().redact_text(text)
    assert result.text == marker("aws_access_key_id") + marker("slack_webhook") + " ok"
    assert [text[f.start : f.end] for f in result.findings] == [AWS_ID, HOOK]
