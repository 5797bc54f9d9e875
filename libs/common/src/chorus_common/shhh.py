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
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from chorus_common.envelopes import Envelope, Payload, Redaction
from chorus_common.errors import PayloadError

Severity = Literal["low", "medium", "high", "critical"]

MARKER_PREFIX = "[REDACTED:"
#: rescans of one text at most; only crafted input needs more than two
MAX_PASSES = 8
#: per pattern and pass, how often a candidate that overlaps a secret already taken
#: is retried one character further on; past this, scanning resumes after it
#: (bounds the work crafted input can cause)
_RETRIES = 64
_MARKER = re.compile(r"\[REDACTED:[A-Za-z0-9_]+\]")


@dataclass(frozen=True)
class Pattern:
    """One kind of secret; ``hints`` are lower-case literals every match contains."""

    name: str
    severity: Severity
    regex: re.Pattern[str]
    hints: tuple[str, ...]
    #: a test on the secret text that regexes would make slow (e.g. "has a digit")
    check: Callable[[str], bool] | None = None

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
) -> Pattern:
    return Pattern(name, severity, re.compile(pattern), tuple(h.lower() for h in hints), check)


_DIGIT = re.compile(r"[0-9]")


def _has_digit(secret: str) -> bool:
    return _DIGIT.search(secret) is not None


# A name ending in one of these, followed by = or :, is a credential assignment:
# DB_PASSWORD=…, "api_key": "…", x-auth-token: …, config.secret = '…'.
_SECRET_NAMES = (
    r"api[_\-]?key|apikey|api[_\-]?secret|api[_\-]?token|access[_\-]?key|access[_\-]?token"
    r"|auth[_\-]?token|refresh[_\-]?token|client[_\-]?secret|private[_\-]?key|secret[_\-]?key"
    r"|password|passwd|passphrase|secret|token|credentials?"
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

PATTERNS: tuple[Pattern, ...] = (
    _p(
        "pem_private_key",
        "critical",
        # the body cannot run past "-----", so a BEGIN without END costs no rescan;
        # headers (Proc-Type: 4,ENCRYPTED) and JSON-escaped newlines are body too
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        r"(?:[A-Za-z0-9+/=\s\\:,]|-(?!----))*"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?",
        ("private key",),
    ),
    _p("aws_access_key_id", "critical", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", ("akia", "asia")),
    _p(
        "aws_secret_access_key",
        "critical",
        r"(?i)(?<![A-Za-z0-9])(?:aws_?)?secret_?access_?key\\?[\"']?\s*[:=]\s*\\?[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        ("secret",),
    ),
    _p(
        "github_token",
        "critical",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _p("gitlab_token", "critical", r"\bglpat-[A-Za-z0-9_\-]{20,}", ("glpat-",)),
    _p(
        "slack_webhook",
        "high",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]+",
        ("hooks.slack.com",),
    ),
    _p("slack_token", "high", r"\bxox[baprs]-[A-Za-z0-9\-]{10,}", ("xox",)),
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
        r"[^\s:/?#@\"'<>]*:([^\s@/?#\"'<>]+)@",
        ("://",),
    ),
    _p(
        "secret_assignment",
        "medium",
        _ASSIGNMENT,
        ("key", "secret", "token", "pass", "credential"),
    ),
)

#: every pattern name, for dashboards that want a zero for each
PATTERN_NAMES: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in PATTERNS))


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


class Redactor:
    """Compiled once per process; ``counts`` accumulates findings by pattern for audits."""

    def __init__(self, patterns: tuple[Pattern, ...] = PATTERNS) -> None:
        self.patterns = patterns
        self.counts: Counter[str] = Counter()
        self._hints = tuple(dict.fromkeys(h for p in patterns for h in p.hints))

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
        return any(h in lowered for h in self._hints)

    def _scan(self, text: str) -> list[tuple[int, int, Pattern]]:
        """One pass: non-overlapping secret spans, specific patterns first, sorted by start."""
        lowered = text.lower()
        present = {h for h in self._hints if h in lowered}
        if not present:
            return []
        taken = _Spans()
        if MARKER_PREFIX.lower() in lowered:
            for existing in _MARKER.finditer(text):  # earlier redactions stay as they are
                taken.add(*existing.span())
        found: list[tuple[int, int, Pattern]] = []
        for pattern in self.patterns:
            if not any(h in present for h in pattern.hints):
                continue
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
        """Redact the payload's strings, and nothing else.

        An unchanged envelope is returned as the same object. A changed one is a
        copy whose payload is re-validated through its model and whose
        ``redaction`` records the original's digest (so the feed still verifies)
        and the counts by pattern (added to any earlier redaction's).
        """
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
    "MARKER_PREFIX",
    "MAX_PASSES",
    "PATTERNS",
    "PATTERN_NAMES",
    "Finding",
    "Pattern",
    "RedactingFilter",
    "RedactionResult",
    "Redactor",
    "Severity",
    "default_redactor",
    "marker",
    "redact_envelope",
    "redact_text",
    "redact_value",
]
