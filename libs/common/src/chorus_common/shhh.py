"""SHHH, the secrets sentinel: finds credentials in text and replaces them before they persist.

Applied to envelope payloads before anything reaches the stream, and to every
log record (:class:`RedactingFilter`). Each secret becomes ``[REDACTED:<pattern>]``;
a redacted envelope keeps the digest of its original (``Envelope.redaction``)
so its feed still verifies; each finding carries the pattern name and a
severity, and :attr:`Redactor.counts` keeps audit counts for metrics.

Design notes:

* **Cheap when clean.** Every pattern declares literal *hints* (lower-case
  substrings it cannot match without). One ``lower()`` and a few substring
  tests decide which patterns run at all; text with no hint costs no regex.
* **Priority, then a fixed point.** Patterns run in priority order
  (specific before generic); a candidate overlapping a secret already taken,
  or an existing ``[REDACTED:…]`` marker, is skipped. Scans repeat until
  nothing new is found, so redacting a redacted text changes nothing
  (idempotence, checked by property tests), and :class:`Finding` offsets are
  mapped back to index the input.
* **Only the secret goes.** Where a pattern has capturing groups the first
  group that took part is the secret (``password=`` and the URL's user stay).
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, SecretStr, ValidationError

from chorus_common.envelopes import Envelope, Payload, Redaction
from chorus_common.errors import EnvelopeError, PayloadError

Severity = Literal["low", "medium", "high", "critical"]

MARKER_PREFIX = "[REDACTED:"
#: rescans of one text at most; only crafted input needs more than two
MAX_PASSES = 8
#: per pattern and pass, how often a candidate that overlaps a secret already taken
#: is retried one character further on; past this, scanning resumes after it
#: (bounds the work crafted input can cause)
_RETRIES = 64
_MARKER = re.compile(r"\[REDACTED:[A-Za-z0-9_]+\]")
#: configured secrets shorter than this are not redacted (see :func:`literal_pattern`)
MIN_LITERAL_LENGTH = 8
LITERAL_PATTERN = "configured_secret"


@dataclass(frozen=True)
class Pattern:
    """One kind of secret; ``hints`` are literals every match contains.

    Hints are lower-case and tested against the lower-cased text, unless
    ``match_case``: then they are tested as given (``AC`` of a Twilio SID would
    otherwise let the regex loose on every "account").
    """

    name: str
    severity: Severity
    regex: re.Pattern[str]
    hints: tuple[str, ...]
    #: a test on the secret text that regexes would make slow (e.g. "has a digit")
    check: Callable[[str], bool] | None = None
    match_case: bool = False

    def hinted(self, text: str, lowered: str) -> bool:
        """Whether ``text`` holds one of the hints, so the regex is worth running."""
        haystack = text if self.match_case else lowered
        return any(h in haystack for h in self.hints)

    def secret_span(self, match: re.Match[str]) -> tuple[int, int]:
        """The span to replace: the first capturing group that matched, else the whole match."""
        for index in range(1, (self.regex.groups or 0) + 1):
            start, end = match.span(index)
            if start >= 0:
                return start, end
        return match.span()


def _p(
    name: str,
    severity: Severity,
    pattern: str,
    hints: tuple[str, ...],
    check: Callable[[str], bool] | None = None,
    *,
    match_case: bool = False,
) -> Pattern:
    hints = hints if match_case else tuple(h.lower() for h in hints)
    return Pattern(name, severity, re.compile(pattern), hints, check, match_case)


_DIGIT = re.compile(r"[0-9]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_SYMBOL = re.compile(r"[!@#$%^&*+=/\\|~?<>_]")
_CAMEL = re.compile(r"[a-z][A-Z]")


def _has_digit(secret: str) -> bool:
    return _DIGIT.search(secret) is not None


def _mixed_base64(secret: str) -> bool:
    """Upper, lower and digit: random key material, not a word, a path or a hex digest."""
    return (
        _has_digit(secret) and any(c.isupper() for c in secret) and any(c.islower() for c in secret)
    )


def _bare_aws_secret(secret: str) -> bool:
    """A 40-character run with nothing around it: only '/' or '+' and mixed case tell a
    key (30 random bytes in standard base64) from a sha1 or a word; about 72 % of keys
    have one, the rest need context (``aws_secret_access_key``, an AKIA id nearby)."""
    return ("/" in secret or "+" in secret) and _mixed_base64(secret)


def _not_a_path(secret: str) -> bool:
    """``PWD=/home/dev`` and ``key_file=./id.pem`` name files; they are not the secret."""
    return not secret.startswith(("/", "~/", "./", "../", "$", "%", "{{", "${"))


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _looks_like_password(secret: str) -> bool:
    """After "the password is": ``hunter2``, ``Tr0ub4dor&3``, ``S3cr3t!``, never
    ``incorrect``, ``required``, ``case-sensitive`` or a short count."""
    if len(secret) < 6:
        return False
    letters = any(c.isalpha() for c in secret)
    return (
        (letters and _has_digit(secret))
        or _SYMBOL.search(secret) is not None
        or secret.isdigit()
        or _CAMEL.search(secret) is not None
    )


def _high_entropy(secret: str) -> bool:
    """Random-looking: letters and digits, ≥ 3.5 bits per character, and not one of the
    values our own envelopes carry after such words (UUIDs, sha1 / sha256 digests)."""
    if not (_has_digit(secret) and any(c.isalpha() for c in secret)):
        return False
    if _UUID.fullmatch(secret) or (len(secret) in (40, 64) and _HEX.fullmatch(secret)):
        return False
    return _entropy(secret) >= 3.5


# A name ending in one of these, followed by = or :, is a credential assignment:
# DB_PASSWORD=…, "api_key": "…", x-auth-token: …, config.secret = '…'.
_SECRET_NAMES = (
    r"api[_\-]?key|apikey|api[_\-]?secret|api[_\-]?token|access[_\-]?key|access[_\-]?token"
    r"|auth[_\-]?token|auth[_\-]?key|refresh[_\-]?token|client[_\-]?secret|client[_\-]?key"
    r"|private[_\-]?key|priv[_\-]?key|secret[_\-]?key|service[_\-]?key|account[_\-]?key"
    r"|db[_\-]?pass|key[_\-]?pass"
    r"|password|passwd|passphrase|pwd|secret|token|credentials?"
)
_ASSIGNMENT = (
    r"(?i)(?<![A-Za-z0-9_.\-])"  # the name starts a word (no O(n^2) rescans inside names)
    r"(?:[A-Za-z0-9]+[_.\-])*"  # prefix words: DB_, github-, settings.
    rf"(?:{_SECRET_NAMES})"
    r"\\?[\"']?\s*(?::=|=>|[:=])\s*"  # optional closing quote (also JSON-escaped), then = or :
    r"(?:"
    r"\"((?:[^\"\\\n]|\\.){3,})\""  # "double quoted", escapes allowed
    r"|'((?:[^'\\\n]|\\.){3,})'"  # 'single quoted'
    r"|\\\"((?:(?!\\\")[^\n]){3,}?)\\\""  # \"quoted inside a JSON string\"
    r"|(?![\"'\\])([^\s\"'`,;{}()\[\]<>\\]{6,})"  # bare env-style value
    r")"
)
# Prose: "the db password is hunter2.", "API key for staging was set to 'k3y-42'".
_PROSE = (
    r"(?i)(?<![A-Za-z0-9_])"
    r"(?:pass(?:word|wd|phrase|code)?|pwd|secret|token|api[ _\-]?key|access[ _\-]?key"
    r"|private[ _\-]?key|credentials?)s?"
    r"(?:[^\S\n]+[\w.@\-]+){0,4}?"  # up to four words: "for the staging db"
    # the longest verb first: "was changed to X" must not stop at "was"
    r"[^\S\n]+(?:(?:(?:has|have)[^\S\n]+been|was|were|is|are)[^\S\n]+(?:set|changed|reset)"
    r"[^\S\n]+to|(?:set|changed|reset)[^\S\n]+to|is[^\S\n]+now|will[^\S\n]+be|is|was|are)"
    r"(?!\w)[^\S\n]*:?[^\S\n]*"
    r"[\"'`]?([^\s\"'`]{4,200}?)[\"'`]?(?=[.,;:!?)\]]*(?:\s|$))"
)
# A random-looking value right after a secret word, with no = or ":": "use token 9f8e…".
_KEYWORD_ENTROPY = (
    r"(?i)(?<![A-Za-z0-9_])"
    r"(?:pass(?:word|wd|phrase)|pwd|secret|token|api[ _\-]?key|apikey|access[ _\-]?key"
    r"|private[ _\-]?key|client[ _\-]?secret|auth[ _\-]?key)s?"
    r"(?:[^\S\n]+[A-Za-z]{1,12}){0,2}?"  # "token for prod …", "secret value …"
    r"[\s(\[<:]+[\"'`]?"
    r"([A-Za-z0-9+/=_\-.~]{15,511}[A-Za-z0-9+/=_\-~])"  # a full stop after it stays
)
# Standard base64, 40 characters, bounded by anything that is not base64 (nor base64url,
# so our own base64url keys and signatures never match).
_B64_40 = r"(?<![A-Za-z0-9/+=_\-])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=_\-])"
_AWS_ID = r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}"
_AWS_ID_HINTS = ("a3t", "abia", "acca", "akia", "asia")
_PEM_BODY = r"(?:[A-Za-z0-9+/=\s\\:,]|-(?!----))*"

PATTERNS: tuple[Pattern, ...] = (
    _p(
        "pem_private_key",
        "critical",
        # the body cannot run past "-----", so a BEGIN without END costs no rescan;
        # headers (Proc-Type: 4,ENCRYPTED) and JSON-escaped newlines are body too
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        + _PEM_BODY
        + r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
        ("private key",),
    ),
    _p(
        "pem_private_key",
        "critical",
        # RFC 4716 / SSH.COM: "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"
        r"---- BEGIN SSH2 (?:ENCRYPTED )?PRIVATE KEY ----"
        r"(?:[A-Za-z0-9+/=\s\\:,\"]|-(?!---))*"
        r"(?:---- END SSH2 (?:ENCRYPTED )?PRIVATE KEY ----)?",
        ("private key",),
    ),
    _p(
        "putty_private_key",
        "critical",
        r"(?i)Private-Lines:[^\S\n]*\d+(?:\s|\\[rn])+"
        r"((?:[A-Za-z0-9+/=]{8,}+(?:\r?\n|\\r?\\n))*[A-Za-z0-9+/=]{8,}+)",
        ("private-lines",),
    ),
    _p("aws_access_key_id", "critical", rf"\b{_AWS_ID}\b", _AWS_ID_HINTS),
    _p(
        "aws_secret_access_key",
        "critical",
        r"(?i)(?<![A-Za-z0-9])(?:aws_?)?secret_?access_?key\\?[\"']?\s*[:=]\s*\\?[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        ("secret",),
    ),
    _p(
        "aws_secret_access_key",
        "critical",
        # detect-secrets' AWS rule, unquoted too: "aws … key/secret/token … <40>"
        r"(?i)(?<![A-Za-z0-9])aws[^\n]{0,20}?(?:key|pwd|pw|password|pass|token|secret)"
        r"[^\n]{0,20}?[\s=:\"'(,]" + _B64_40,
        ("aws",),
        _mixed_base64,
    ),
    _p(
        "aws_secret_access_key",
        "critical",
        # a key pair pasted together: the id, then the secret within 200 characters
        rf"\b{_AWS_ID}\b[\s\S]{{0,200}}?" + _B64_40,
        _AWS_ID_HINTS,
        _mixed_base64,
    ),
    _p(
        "aws_secret_access_key",
        "critical",
        # ... or the secret first
        _B64_40 + rf"[\s\S]{{0,200}}?\b{_AWS_ID}\b",
        _AWS_ID_HINTS,
        _mixed_base64,
    ),
    _p("aws_secret_access_key", "high", _B64_40, ("/", "+"), _bare_aws_secret),
    _p(
        "github_token",
        "critical",
        r"\b(?:gh[pousr]_[A-Za-z0-9_]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _p(  # ours: enrolled agent tokens and one-time enrolment tokens (chorus_gateway.enrolment)
        "chorus_token",
        "critical",
        r"(?<![A-Za-z0-9_\-])(?:agt|enr)_[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])",
        ("agt_", "enr_"),
    ),
    _p(
        "gitlab_token",
        "critical",
        r"(?<![A-Za-z0-9_\-])(?:(?:glpat|gldt|glft|glsoat|glrt|gloas|glagent|glptt|glimt)-"
        r"|glcbt-(?:[0-9a-fA-F]{2}_)?|GR1348941)[A-Za-z0-9_\-]{20,1024}",
        (
            *("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "gloas-", "glagent-"),
            *("glptt-", "glimt-", "glcbt-", "gr1348941"),
        ),
    ),
    _p(
        "slack_webhook",
        "high",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]+",
        ("hooks.slack.com",),
    ),
    _p(
        "slack_token",
        "high",
        r"(?i)\b(?:xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{10,})",
        ("xox", "xapp-"),
    ),
    _p(
        "stripe_key",
        "critical",
        # secret and restricted keys, live and test, and webhook signing secrets; pk_
        # publishable keys are public by design (they ship in web pages) and stay
        r"(?<![A-Za-z0-9])(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247}|whsec_[A-Za-z0-9]{24,})",
        ("sk_live_", "rk_live_", "sk_test_", "rk_test_", "whsec_"),
    ),
    _p(
        "google_api_key",
        "critical",
        r"(?<![A-Za-z0-9_\-])(?:AIza[0-9A-Za-z_\-]{35}|GOCSPX-[0-9A-Za-z_\-]{28}"
        r"|ya29\.[0-9A-Za-z_\-]{20,})(?![A-Za-z0-9_\-])",
        ("aiza", "gocspx-", "ya29."),
    ),
    # account SIDs (AC…) and API key SIDs (SK…): 32 lower-case hex digits; one literal
    # prefix each, no look-behind, so the regex engine can skip to it
    _p("twilio_key", "high", r"AC[0-9a-f]{32}(?![A-Za-z0-9])", ("AC",), match_case=True),
    _p("twilio_key", "high", r"SK[0-9a-f]{32}(?![A-Za-z0-9])", ("SK",), match_case=True),
    _p(
        "sendgrid_key",
        "critical",
        r"(?<![A-Za-z0-9])SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])",
        ("sg.",),
    ),
    _p(
        "npm_token",
        "critical",
        r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])|:_authToken=\s*([^\s\"']+)",
        ("npm_", "_authtoken"),
    ),
    _p(
        "pypi_token",
        "critical",
        r"pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_\-]{50,}",
        ("pypi-",),
    ),
    _p(
        "azure_storage_key",
        "critical",
        r"(?i)AccountKey=([A-Za-z0-9+/]{86}==)",
        ("accountkey=",),
    ),
    _p(
        "azure_sas_token",
        "high",
        # the signature of a shared access signature URL (?sv=…&sig=…)
        r"(?i)[?&]sig=([A-Za-z0-9%+/=]{16,})",
        ("sig=",),
    ),
    _p(
        "telegram_bot_token",
        "high",
        # also inside a bot URL: https://api.telegram.org/bot<token>/getMe
        r"(?<![0-9])[0-9]{8,10}:AA[0-9A-Za-z_\-]{33}(?![A-Za-z0-9_\-])",
        (":aa",),
    ),
    _p(
        "square_oauth_secret",
        "high",
        r"\bsq0(?:csp|atp)-[0-9A-Za-z_\-]{22,43}",
        ("sq0csp-", "sq0atp-"),
    ),
    _p(
        "mailchimp_key",
        "high",
        r"(?<![A-Za-z0-9])[0-9a-f]{32}-us[0-9]{1,2}(?![A-Za-z0-9])",
        ("-us",),
    ),
    _p(
        "openai_key",
        "critical",
        r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20,}",
        ("sk-",),
        _has_digit,  # so prose such as "sk-learn-compatible-estimators" stays
    ),
    _p(
        "jwt",
        "high",
        # starts only where a base64url run starts, and never backtracks into a segment:
        # "eyJ…-eyJ…-eyJ…" without dots would otherwise be rescanned from every "eyJ"
        r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,}+\.[A-Za-z0-9_\-]{5,}+\.[A-Za-z0-9_\-]{10,}",
        ("eyj",),
    ),
    _p(
        "bearer_token",
        "high",
        r"(?i)\bauthorization\\?[\"']?\s*[:=]\s*\\?[\"']?bearer\s+([^\s\"'`,;\\]{8,})",
        ("bearer",),
    ),
    _p(
        "bearer_token",
        "high",
        # outside an Authorization header: long and with a digit, so "Bearer of news" stays
        r"(?i)\bbearer\s+([A-Za-z0-9_\-.=~+/]{16,})",
        ("bearer",),
        _has_digit,
    ),
    _p(
        "basic_auth",
        "high",
        r"(?i)\bauthorization\\?[\"']?\s*[:=]\s*\\?[\"']?basic\s+([A-Za-z0-9+/=]{8,})",
        ("basic",),
    ),
    _p(
        "url_password",
        "high",
        # scheme://user:password@host - the user stays; ucxl://agent:role@… is an address
        r"(?<![A-Za-z0-9+.\-])(?![uU][cC][xX][lL]://)[A-Za-z][A-Za-z0-9+.\-]*://"
        # (a raw '#' in the password is common, though RFC 3986 wants it escaped)
        r"[^\s:/?#@\"'<>]*:([^\s@/?\"'<>]+)@",
        ("://",),
    ),
    _p(
        "secret_assignment",
        "medium",
        _ASSIGNMENT,
        ("key", "secret", "token", "pass", "pwd", "credential"),
        _not_a_path,
    ),
    _p(
        "secret_prose",
        "medium",
        _PROSE,
        ("pass", "pwd", "secret", "token", "key", "credential"),
        _looks_like_password,
    ),
    _p(
        "secret_keyword",
        "medium",
        _KEYWORD_ENTROPY,
        ("pass", "pwd", "secret", "token", "key"),
        _high_entropy,
    ),
)

#: every pattern name, for dashboards that want a zero for each
PATTERN_NAMES: tuple[str, ...] = (
    LITERAL_PATTERN,
    *dict.fromkeys(p.name for p in PATTERNS),
)


@dataclass(frozen=True)
class Finding:
    """One secret found: offsets index the text given to :meth:`Redactor.redact_text`.

    ``path`` names where in a value it was (``"problem"``, ``"items.0.note"``)
    when found by :meth:`Redactor.redact_value`; empty for plain text.
    """

    pattern: str
    severity: Severity
    start: int
    end: int
    path: str = ""


@dataclass(frozen=True)
class RedactionResult:
    text: str
    findings: list[Finding]

    @property
    def changed(self) -> bool:
        return bool(self.findings)


def marker(name: str) -> str:
    return f"{MARKER_PREFIX}{name}]"


class _Spans:
    """Sorted, non-overlapping [start, end) spans with an O(log n) overlap test."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect_left(self.starts, start)
        if i > 0 and self.ends[i - 1] > start:
            return True
        return i < len(self.starts) and self.starts[i] < end

    def add(self, start: int, end: int) -> None:
        i = bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)


def _split(
    pieces: list[tuple[int, int] | str],
    found: list[tuple[int, int, Pattern]],
    findings: list[Finding],
) -> list[tuple[int, int] | str]:
    """Cut the spans ``found`` (offsets in the current text) out of ``pieces``.

    Markers are never part of a span (they are protected), so each span lies in
    one input piece and maps back to input offsets; ``findings`` gets those.
    """
    out: list[tuple[int, int] | str] = []
    cursor = 0  # where the piece being looked at starts in the current text
    index = 0
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            cursor += len(piece)
            continue
        first, stop = piece
        length = stop - first
        at = first  # input offset of what is left of this piece
        while index < len(found) and found[index][0] < cursor + length:
            start, end, pattern = found[index]
            begin = first + (start - cursor)
            finish = first + (end - cursor)
            if begin > at:
                out.append((at, begin))
            out.append(marker(pattern.name))
            findings.append(Finding(pattern.name, pattern.severity, begin, finish))
            at = finish
            index += 1
        if at < stop:
            out.append((at, stop))
        cursor += length
    return out


def literal_pattern(secrets: Iterable[str]) -> Pattern | None:
    """Exact occurrences of configured secrets (admin and publish tokens, passwords).

    Tokens shorter than :data:`MIN_LITERAL_LENGTH` are left out: redacting every
    ``abc`` in every message would garble text and protect nothing. Longer ones
    are tried first, so a token that contains another is taken whole.
    """
    chosen = sorted({s for s in secrets if len(s) >= MIN_LITERAL_LENGTH}, key=len, reverse=True)
    if not chosen:
        return None
    return Pattern(
        LITERAL_PATTERN,
        "critical",
        re.compile("|".join(re.escape(s) for s in chosen)),
        tuple(chosen),
        match_case=True,
    )


class Redactor:
    """Compiled once per process; ``counts`` accumulates findings by pattern for audits.

    ``secrets`` are literal values this process knows to be secret (its admin token,
    the publish tokens it accepts): any exact occurrence is redacted as
    ``configured_secret`` before any other pattern runs, whatever it looks like.
    """

    def __init__(
        self, patterns: tuple[Pattern, ...] = PATTERNS, secrets: Iterable[str] = ()
    ) -> None:
        self.base_patterns = patterns
        self.counts: Counter[str] = Counter()
        self.literals: frozenset[str] = frozenset()
        self._configure(patterns)
        self.add_secrets(secrets)

    def _configure(self, patterns: tuple[Pattern, ...]) -> None:
        self.patterns = patterns
        self._hints = tuple(dict.fromkeys(h for p in patterns if not p.match_case for h in p.hints))
        self._case_hints = tuple(
            dict.fromkeys(h for p in patterns if p.match_case for h in p.hints)
        )
        self._verdicts: dict[str, tuple[str, ...]] = {}

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also redact exact occurrences of ``secrets`` (e.g. once settings are loaded)."""
        self.literals = self.literals | {s for s in secrets if len(s) >= MIN_LITERAL_LENGTH}
        literal = literal_pattern(self.literals)
        self._configure(self.base_patterns if literal is None else (literal, *self.base_patterns))

    def redact_text(self, text: str) -> RedactionResult:
        """Replace every secret in ``text`` with ``[REDACTED:<pattern>]``.

        Scans repeat until nothing more is found (at most :data:`MAX_PASSES`):
        replacing one secret can change what its neighbours look like to a
        pattern (``KEYhttps://…`` has no word boundary until the URL is gone).
        Finding offsets always index ``text`` itself.
        """
        if not text:
            return RedactionResult(text, [])
        # the current text as pieces of the input, (start, end), and markers, str
        pieces: list[tuple[int, int] | str] = [(0, len(text))]
        current = text
        findings: list[Finding] = []
        for _ in range(MAX_PASSES):
            found = self._scan(current)
            if not found:
                break
            pieces = _split(pieces, found, findings)
            current = "".join(p if isinstance(p, str) else text[p[0] : p[1]] for p in pieces)
        if not findings:
            return RedactionResult(text, [])
        findings.sort(key=lambda f: f.start)
        self.counts.update(f.pattern for f in findings)
        return RedactionResult(current, findings)

    def may_contain_secret(self, text: str) -> bool:
        """The cheap pre-check: ``False`` means no pattern can match ``text``."""
        lowered = text.lower()
        return any(h in lowered for h in self._hints) or any(h in text for h in self._case_hints)

    def _scan(self, text: str) -> list[tuple[int, int, Pattern]]:
        """One pass: non-overlapping secret spans, specific patterns first, sorted by start."""
        lowered = text.lower()
        hinted = [p for p in self.patterns if p.hinted(text, lowered)]
        if not hinted:
            return []
        taken = _Spans()
        if MARKER_PREFIX.lower() in lowered:
            for existing in _MARKER.finditer(text):  # earlier redactions stay as they are
                taken.add(*existing.span())
        found: list[tuple[int, int, Pattern]] = []
        for pattern in hinted:
            regex, check = pattern.regex, pattern.check
            pos = retries = 0
            while (match := regex.search(text, pos)) is not None:
                after = max(match.end(), match.start() + 1)
                start, end = pattern.secret_span(match)
                if end <= start or (check is not None and not check(text[start:end])):
                    pos = after
                    continue
                if taken.overlaps(start, end):
                    # a later candidate inside this match may not overlap: look again
                    # one character on, a bounded number of times
                    retries += 1
                    pos = match.start() + 1 if retries <= _RETRIES else after
                    continue
                taken.add(start, end)
                found.append((start, end, pattern))
                pos = after
        found.sort(key=lambda f: f[0])
        return found

    def redact_value(self, value: Any, path: str = "") -> tuple[Any, list[Finding]]:
        """Redact every string inside dicts, lists and tuples; other values pass through.

        Dict keys are left alone (they are field names, not data). Each finding's
        ``path`` says where it was, e.g. ``"items.0.note"``.
        """
        if isinstance(value, str):
            result = self.redact_text(value)
            if path:
                return result.text, [_at(f, path) for f in result.findings]
            return result.text, result.findings
        if isinstance(value, dict):
            findings: list[Finding] = []
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[key], found = self.redact_value(item, _join(path, key))
                findings.extend(found)
            return out, findings
        if isinstance(value, list | tuple):
            findings = []
            items: list[Any] = []
            for index, item in enumerate(value):
                red, found = self.redact_value(item, _join(path, index))
                items.append(red)
                findings.extend(found)
            return (tuple(items) if isinstance(value, tuple) else items), findings
        return value, []

    def redact_envelope(self, env: Envelope) -> tuple[Envelope, list[Finding]]:
        """Redact the payload's strings; refuse an envelope whose other fields hold a secret.

        Every string of the envelope is scanned. Only the payload can be rewritten:

        * ``sender``, ``sender_role``, ``to_roles``, ``project``, ``task``, ``thread``
          become NATS subject tokens and must match ``[A-Za-z0-9_-]{1,64}``, which no
          ``[REDACTED:…]`` marker does; a token-safe stand-in would move the message
          to another subject and merge unrelated threads. ``id`` is JetStream's
          de-duplication key: two envelopes redacted to the same id would lose the
          second as a "duplicate". So a secret in any of these raises
          :class:`~chorus_common.errors.EnvelopeError` (422) naming the field and the
          pattern, never the value; the sender must choose another name.
        * ``sig`` is a verified Ed25519 signature and ``prev`` a validated sha256
          digest; rewriting either breaks the feed. They are not scanned when they
          have those shapes (random base64url would otherwise, rarely, look like a
          token); a ``sig`` of any other shape is scanned like the fields above.

        An unchanged envelope is returned as the same object. A changed one is a
        copy whose payload is re-validated through its model and whose
        ``redaction`` records the original's digest (so the feed still verifies)
        and the counts by pattern (added to any earlier redaction's).
        """
        self.refuse_fixed_secrets(env)
        # one hint test over the whole payload spares a walk through clean payloads
        if not self.may_contain_secret(env.payload.model_dump_json()):
            return env, []
        raw = env.payload.model_dump(mode="json")
        redacted, findings = self.redact_value(raw)
        if not findings:
            return env, []
        payload = _revalidate(type(env.payload), redacted, env.type.value)
        counts: Counter[str] = Counter(env.redaction.findings if env.redaction else {})
        counts.update(f.pattern for f in findings)
        clean = env.model_copy(
            update={
                "payload": payload,
                "redaction": Redaction(original_digest=env.digest(), findings=dict(counts)),
            }
        )
        return clean, findings

    def refuse_fixed_secrets(self, env: Envelope) -> None:
        """Raise :class:`EnvelopeError` (422) if a field SHHH cannot rewrite holds a secret.

        :meth:`redact_envelope` calls it first; a pipeline that commits to an envelope
        before redacting it (e.g. reserves its feed seq) calls it earlier, so that a
        refused envelope has taken nothing.
        """
        for name, value in _fixed_fields(env):
            patterns = self._field_verdict(value)
            if patterns:
                raise EnvelopeError(
                    f"envelope field {name!r} holds what looks like a secret "
                    f"({', '.join(patterns)}); SHHH cannot redact it there, because "
                    f"{_WHY_FIXED.get(name.split('.')[0], 'it is part of the signed envelope')}"
                    f" - send the envelope without the secret in {name!r}",
                    field=name,
                    patterns=list(patterns),
                )

    def _field_verdict(self, value: str) -> tuple[str, ...]:
        """The patterns ``value`` matches, remembered: senders, projects, threads and roles
        repeat from envelope to envelope, and the hint test alone costs microseconds."""
        verdict = self._verdicts.get(value)
        if verdict is None:
            # a scan, not redact_text: a refused envelope is not a redaction to count
            found = self._scan(value) if self.may_contain_secret(value) else []
            verdict = tuple(sorted({pattern.name for _, _, pattern in found}))
            if len(self._verdicts) >= _VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[value] = verdict
        return verdict


#: why a field cannot be rewritten, for the refusal's message
_WHY_FIXED = {
    "id": "the id is the stream's de-duplication key",
    "sender": "the sender names the feed and its signing key",
    **{
        name: f"{name} is part of the NATS subject the envelope is routed by"
        for name in ("sender_role", "to_roles", "project", "task", "thread")
    },
    "sig": "the signature must stay as signed",
}
_SIGNATURE = re.compile(r"[A-Za-z0-9_\-]{86}(?:==)?")
#: ids as ``new_id`` makes them: Crockford base32 (no I, L, O, U), which no pattern's
#: secret fits, and unique, so not worth remembering
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
#: field values whose verdict is remembered, at most
_VERDICTS_KEPT = 4096


def _fixed_fields(env: Envelope) -> list[tuple[str, str]]:
    """The envelope's strings outside the payload that SHHH may look at but not change."""
    fields = [
        (name, value)
        for name, value in (
            ("id", None if _ULID.fullmatch(env.id) else env.id),
            ("sender", env.sender),
            ("sender_role", env.sender_role),
            ("project", env.project),
            ("task", env.task),
            ("thread", env.thread),
        )
        if value
    ]
    fields.extend((f"to_roles.{i}", role) for i, role in enumerate(env.to_roles))
    if env.sig is not None and not _SIGNATURE.fullmatch(env.sig):
        fields.append(("sig", env.sig))
    return fields


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _at(finding: Finding, path: str) -> Finding:
    return Finding(finding.pattern, finding.severity, finding.start, finding.end, path)


def _revalidate(model: type[Payload], data: dict[str, Any], type_name: str) -> Payload:
    """Validate redacted payload data; a marker longer than its secret may overflow a
    field's ``max_length``, in which case that field is cut to fit (losing text, not
    leaking it)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc
    for error in first.errors():
        limit = (error.get("ctx") or {}).get("max_length")
        if error["type"] == "string_too_long" and isinstance(limit, int):
            _truncate(data, error["loc"], limit)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(
            f"payload of {type_name!r} no longer validates after redacting secrets: "
            f"{exc.errors()[0]['msg']} at {'.'.join(map(str, exc.errors()[0]['loc']))}; "
            f"send it without the secret",
            message_type=type_name,
        ) from None


def _truncate(data: Any, loc: tuple[int | str, ...], limit: int) -> None:
    parent = data
    for step in loc[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return
    last = loc[-1]
    try:
        value = parent[last]
    except (KeyError, IndexError, TypeError):
        return
    if isinstance(value, str):
        parent[last] = value[:limit]


def settings_secrets(settings: BaseModel) -> list[str]:
    """Every ``SecretStr`` value of a settings object: admin token, NATS password, … .

    What a service is configured with, it knows to be secret; passing these to
    :class:`Redactor` (``secrets=``) redacts them wherever they turn up.
    """
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


_default = Redactor()


def default_redactor() -> Redactor:
    """The process-wide redactor whose ``counts`` the module-level helpers feed."""
    return _default


def redact_text(text: str) -> RedactionResult:
    return _default.redact_text(text)


def redact_value(value: Any) -> tuple[Any, list[Finding]]:
    return _default.redact_value(value)


def redact_envelope(env: Envelope) -> tuple[Envelope, list[Finding]]:
    return _default.redact_envelope(env)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in), traceback and stack without secrets.

    Install it on handlers (not loggers) so records from every logger pass it.
    When a traceback holds a secret, ``exc_info`` is dropped and the redacted
    text kept in ``exc_text``: formatters that format ``exc_info`` themselves
    would otherwise print the secret.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or _default

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact_text
        try:
            message = record.getMessage()
        except Exception:
            # The arguments do not fit the format. Logging would print them raw in its
            # "--- Logging error ---" report, so keep both pieces, cleaned, as the message.
            record.msg = redact(f"{record.msg!s} (arguments: {record.args!r})").text
            record.args = None
        else:
            clean = redact(message).text
            if clean != message or record.args:
                record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            clean_exc = redact(text)
            record.exc_text = clean_exc.text
            if clean_exc.changed:
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text).text
        if record.stack_info:
            record.stack_info = redact(record.stack_info).text
        return True


__all__ = [
    "LITERAL_PATTERN",
    "MARKER_PREFIX",
    "MAX_PASSES",
    "MIN_LITERAL_LENGTH",
    "PATTERNS",
    "PATTERN_NAMES",
    "Finding",
    "Pattern",
    "RedactingFilter",
    "RedactionResult",
    "Redactor",
    "Severity",
    "default_redactor",
    "literal_pattern",
    "marker",
    "redact_envelope",
    "redact_text",
    "redact_value",
    "settings_secrets",
]
