"""SHHH: each secret pattern is redacted; ordinary text is left alone.

Secrets are assembled at run time so this file itself holds nothing a secret
scanner would flag.
"""

import json
import logging
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chorus_common.envelopes import Envelope, MessageType, new_id
from chorus_common.errors import EnvelopeError
from chorus_common.feeds import FeedWriter
from chorus_common.logs import JsonFormatter
from chorus_common.shhh import (
    MIN_LITERAL_LENGTH,
    PATTERN_NAMES,
    PATTERNS,
    RedactingFilter,
    Redactor,
    marker,
)
from chorus_common.signing import AgentKey

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


def _joined(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


@dataclass(frozen=True)
class SecretSample:
    kind: str
    pattern: str
    text: str
    #: values that must not survive redaction: the secret, then any ``also``
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class NonSecretSample:
    kind: str
    text: str


@dataclass(frozen=True)
class Corpus:
    secrets: list[SecretSample]
    non_secrets: list[NonSecretSample]


CORPUS_FILE = Path(__file__).with_name("shhh_corpus.yaml")


def load_corpus(path: Path = CORPUS_FILE) -> Corpus:
    """shhh_corpus.yaml, its split values joined (see the file's header)."""
    doc = yaml.safe_load(path.read_text())
    secrets = []
    for item in doc["secrets"]:
        secret = _joined(item["secret"])
        also = tuple(_joined(value) for value in item.get("also", []))
        text = _joined(item["text"]).replace("{secret}", secret)
        secrets.append(SecretSample(item["kind"], item["pattern"], text, (secret, *also)))
    non_secrets = [NonSecretSample(item["kind"], item["text"]) for item in doc["non_secrets"]]
    return Corpus(secrets, non_secrets)


CORPUS = load_corpus()
#: the configured secret the corpus' configured_secret samples carry
CONFIGURED = [s.secrets[0] for s in CORPUS.secrets if s.pattern == "configured_secret"]

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
    covered = {case[0] for case in CASES} | {sample.pattern for sample in CORPUS.secrets}
    assert set(PATTERN_NAMES) == covered


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
        assert pattern.hints
        assert pattern.match_case or all(h == h.lower() for h in pattern.hints)


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


# -- the corpus: every secret sample, no non-secret -----------------------------------------------


@pytest.mark.parametrize("sample", CORPUS.secrets, ids=lambda s: f"{s.kind}-{s.pattern}")
def test_corpus_secret_is_redacted(sample: SecretSample) -> None:
    result = Redactor(secrets=CONFIGURED).redact_text(sample.text)
    for secret in sample.secrets:
        assert secret not in result.text
    assert sample.pattern in {f.pattern for f in result.findings}


def generated_non_secrets(count: int = 200) -> list[NonSecretSample]:
    """Values our envelopes carry, as they appear in envelope JSON: Ed25519 public keys
    and signatures, sha256 digests, UUIDs and ULIDs (seeded, so a failure reproduces)."""
    rng = random.Random(20)
    out = []
    for _ in range(count):
        key = AgentKey.from_private_bytes(rng.randbytes(32))
        digest = rng.randbytes(32).hex()
        out += [
            NonSecretSample("ed25519_public_key", f'"public_key": "{key.public_key}"'),
            NonSecretSample("ed25519_signature", f'"sig": "{key.sign(bytes.fromhex(digest))}"'),
            NonSecretSample("sha256", f'"prev": "{digest}"'),
            NonSecretSample(
                "uuid", f'"request_id": "{uuid.UUID(int=rng.getrandbits(128), version=4)}"'
            ),
            NonSecretSample("ulid", f'"id": "{new_id(rng.randrange(2**40), rng.randbytes(10))}"'),
        ]
    return out


NON_SECRETS = CORPUS.non_secrets + generated_non_secrets()


def test_no_non_secret_is_redacted() -> None:
    redactor = Redactor(secrets=CONFIGURED)
    redacted = {
        sample.text: [f.pattern for f in found]
        for sample in NON_SECRETS
        if (found := redactor.redact_text(sample.text).findings)
    }
    assert redacted == {}


def test_signed_envelopes_pass_unchanged() -> None:
    """Real feeds: ids, signatures and prev digests are never redacted or refused."""
    rng = random.Random(5)
    redactor = Redactor(secrets=CONFIGURED)
    for _ in range(50):
        writer = FeedWriter("agent-1", AgentKey.from_private_bytes(rng.randbytes(32)))
        for text in ("tests hang", "see ucxl://gpt4:architect@chorus:v2/*^/x.json"):
            env = writer.seal(help_request(text).model_copy(update={"thread": "th-1"}))
            same, findings = redactor.redact_envelope(env)
            assert same is env and findings == []


def detect_secrets_types(texts: list[str], tmp_path: Path) -> list[set[str]]:
    """What detect-secrets (every plugin, default settings and filters) reports per text.

    Each text is scanned as a file of its own, as ``detect-secrets scan`` would: its
    ad-hoc ``scan_line`` reports every word with its entropy, verdict or not.
    """
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    found: list[set[str]] = []
    with default_settings():
        for index, text in enumerate(texts):
            path = tmp_path / f"sample-{index}.txt"
            path.write_text(text + "\n")
            collection = SecretsCollection()
            collection.scan_file(str(path))
            found.append({secret.type for _, secret in collection})
    return found


def test_shhh_catches_what_detect_secrets_catches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    redactor = Redactor(secrets=CONFIGURED)
    secrets = CORPUS.secrets
    by_detect_secrets = detect_secrets_types([s.text for s in secrets], tmp_path)
    by_shhh = [all(v not in redactor.redact_text(s.text).text for v in s.secrets) for s in secrets]
    missed = [
        (s.kind, s.text[:60], sorted(types))
        for s, types, caught in zip(secrets, by_detect_secrets, by_shhh, strict=True)
        if types and not caught
    ]
    assert missed == []  # SHHH ⊇ detect-secrets on the corpus
    assert all(by_shhh)  # and it catches those detect-secrets misses

    false_ds = detect_secrets_types([s.text for s in NON_SECRETS], tmp_path)
    false_shhh = [bool(redactor.redact_text(s.text).findings) for s in NON_SECRETS]
    assert not any(false_shhh)

    rows: dict[str, Counter[str]] = {}
    for s, types, caught in zip(secrets, by_detect_secrets, by_shhh, strict=True):
        row = rows.setdefault(s.kind, Counter())
        row.update(samples=1, detect_secrets=bool(types), shhh=caught)
    table = [f"{'secrets caught':<20}{'samples':>8}{'detect-secrets':>16}{'SHHH':>6}"]
    total = sum(rows.values(), Counter())
    for kind, row in [*rows.items(), ("total", total)]:
        table.append(f"{kind:<20}{row['samples']:>8}{row['detect_secrets']:>16}{row['shhh']:>6}")
    flagged: dict[str, Counter[str]] = {}
    for plain, types, hit in zip(NON_SECRETS, false_ds, false_shhh, strict=True):
        row = flagged.setdefault(plain.kind, Counter())
        row.update(samples=1, detect_secrets=bool(types), shhh=hit)
    table.append(f"{'non-secrets flagged':<20}{'samples':>8}{'detect-secrets':>16}{'SHHH':>6}")
    total = sum(flagged.values(), Counter())
    for kind, row in [*flagged.items(), ("total", total)]:
        table.append(f"{kind:<20}{row['samples']:>8}{row['detect_secrets']:>16}{row['shhh']:>6}")
    with capsys.disabled():
        print("\n" + "\n".join(table))


# -- the whole envelope --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["project", "thread", "task", "sender_role"])
def test_a_secret_in_a_routing_field_is_refused(field: str) -> None:
    env = help_request("tests hang").model_copy(update={field: GH["ghp"]})
    with pytest.raises(EnvelopeError) as caught:
        Redactor().redact_envelope(env)
    problem = caught.value.to_problem()
    assert problem["status"] == 422 and problem["field"] == field
    assert problem["patterns"] == ["github_token"]
    assert GH["ghp"] not in json.dumps(problem)  # the refusal never repeats the secret


def test_a_secret_in_the_id_or_to_roles_is_refused() -> None:
    for update, field in (({"id": AWS_ID}, "id"), ({"to_roles": ["ops", GLPAT]}, "to_roles.1")):
        env = help_request("ok").model_copy(update=update)
        with pytest.raises(EnvelopeError) as caught:
            Redactor().redact_envelope(env)
        assert caught.value.extra["field"] == field


def test_the_admin_token_in_a_routing_field_is_refused() -> None:
    env = help_request("ok").model_copy(update={"project": "test-admin-token"})
    with pytest.raises(EnvelopeError, match="configured_secret"):
        Redactor(secrets=["test-admin-token"]).redact_envelope(env)
    assert Redactor().redact_envelope(env)[0] is env  # not a secret to a redactor without it


def test_a_sig_that_is_not_a_signature_is_scanned() -> None:
    env = help_request("ok").model_copy(update={"sig": f"token={GH['ghp']}"})
    with pytest.raises(EnvelopeError, match="'sig'"):
        Redactor().redact_envelope(env)


def test_configured_secrets_are_redacted_exactly() -> None:
    admin, publish = "test-admin-token", "gw-Pub-7781"
    redactor = Redactor(secrets=[admin, publish, "short"])
    text = f"retry with {admin} or {publish}; a test-admin-tok is not it, short stays"
    result = redactor.redact_text(text)
    assert result.text == (
        f"retry with {marker('configured_secret')} or {marker('configured_secret')}; "
        "a test-admin-tok is not it, short stays"
    )
    assert len("short") < MIN_LITERAL_LENGTH
    redacted, findings = redactor.redact_envelope(help_request(f"curl -H 'X-Token: {admin}'"))
    assert admin not in redacted.model_dump_json() and findings[0].pattern == "configured_secret"


def test_configured_secrets_can_be_added_later() -> None:
    redactor = Redactor()
    assert redactor.redact_text("pw chorus-admin-Q7fz").findings == []
    redactor.add_secrets(["chorus-admin-Q7fz"])
    assert redactor.redact_text("pw chorus-admin-Q7fz").text == f"pw {marker('configured_secret')}"
    logger, records, handler = capture(logging.Formatter())
    handler.filters[0] = RedactingFilter(redactor)
    try:
        logger.warning("auth header %s", "Bearer chorus-admin-Q7fz")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert "chorus-admin-Q7fz" not in records[0]
