"""SHHH, the secrets sentinel: finds credentials in text and replaces them before they persist.

Applied to envelope payloads before anything reaches the stream, and to every
log record (:class:`RedactingFilter`). A redacted envelope keeps the digest of
its original (``Envelope.redaction``) so its feed still verifies; each finding
carries the pattern name and a severity for audit counts and metrics.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from chorus_common.envelopes import Envelope, Redaction

Severity = Literal["low", "medium", "high", "critical"]


@dataclass(frozen=True)
class Pattern:
    name: str
    severity: Severity
    regex: re.Pattern[str]
    #: the regex group holding the secret (0 = the whole match)
    group: int = 0


def _p(name: str, severity: Severity, pattern: str, group: int = 0, flags: int = 0) -> Pattern:
    return Pattern(name, severity, re.compile(pattern, flags), group)


PATTERNS: tuple[Pattern, ...] = (
    _p(
        "pem_private_key",
        "critical",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    ),
    _p("aws_access_key_id", "critical", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    _p(
        "aws_secret_access_key",
        "critical",
        r"(?i)\baws_?secret_?access_?key\b[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})",
        1,
    ),
    _p(
        "github_token",
        "critical",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    ),
    _p("gitlab_token", "critical", r"\bglpat-[A-Za-z0-9_\-]{20,}\b"),
    _p("slack_token", "high", r"\bxox[baprs]-[A-Za-z0-9\-]{10,}\b"),
    _p(
        "slack_webhook",
        "high",
        r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+",
    ),
    _p("openai_key", "critical", r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}\b"),
    _p("jwt", "high", r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}"),
    _p("bearer_token", "high", r"(?i)\bbearer\s+([A-Za-z0-9_\-\.=~+/]{16,})", 1),
    _p(
        "url_password",
        "high",
        r"\b(?!ucxl://)[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+:([^\s@/]+)@",
        1,
    ),
    _p(
        "secret_assignment",
        "medium",
        r"(?i)\b(?:api[_\-]?key|apikey|password|passwd|pwd|secret|token|access[_\-]?token|client[_\-]?secret)"
        r"\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;}{]{6,})",
        1,
    ),
)

#: a cheap pre-check: text with none of these fragments cannot match any pattern
_HINT = re.compile(
    r"(?i)PRIVATE KEY|AKIA|ASIA|aws|gh[pousr]_|github_pat_|glpat-|xox[baprs]-|hooks\.slack|sk-|eyJ|bearer|://|"
    r"api|key|pass|pwd|secret|token"
)


@dataclass(frozen=True)
class Finding:
    pattern: str
    severity: Severity
    start: int
    end: int


@dataclass(frozen=True)
class RedactionResult:
    text: str
    findings: list[Finding]


def _marker(name: str) -> str:
    return f"[REDACTED:{name}]"


class Redactor:
    """Compiled once per process; ``counts`` accumulates findings by pattern for audits."""

    def __init__(self, patterns: tuple[Pattern, ...] = PATTERNS) -> None:
        self.patterns = patterns
        self.counts: Counter[str] = Counter()

    def redact_text(self, text: str) -> RedactionResult:
        if not text or not _HINT.search(text):
            return RedactionResult(text, [])
        findings: list[Finding] = []
        for pattern in self.patterns:
            pieces: list[str] = []
            last = 0
            for match in pattern.regex.finditer(text):
                start, end = match.span(pattern.group)
                if start < 0 or text[start:end].startswith("[REDACTED:"):
                    continue
                pieces.append(text[last:start])
                pieces.append(_marker(pattern.name))
                last = end
                findings.append(Finding(pattern.name, pattern.severity, start, end))
            if pieces:
                pieces.append(text[last:])
                text = "".join(pieces)
        for finding in findings:
            self.counts[finding.pattern] += 1
        return RedactionResult(text, findings)

    def redact_value(self, value: Any) -> tuple[Any, list[Finding]]:
        """Redact every string inside dicts and lists; other values pass through."""
        if isinstance(value, str):
            result = self.redact_text(value)
            return result.text, result.findings
        if isinstance(value, dict):
            findings: list[Finding] = []
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[key], found = self.redact_value(item)
                findings.extend(found)
            return out, findings
        if isinstance(value, list):
            findings = []
            items = []
            for item in value:
                red, found = self.redact_value(item)
                items.append(red)
                findings.extend(found)
            return items, findings
        return value, []

    def redact_envelope(self, env: Envelope) -> tuple[Envelope, list[Finding]]:
        """Redact payload strings; a changed envelope records its original digest."""
        raw = env.payload.model_dump(mode="json")
        redacted, findings = self.redact_value(raw)
        if not findings:
            return env, []
        counts = Counter(f.pattern for f in findings)
        payload = type(env.payload).model_validate(redacted)
        clean = env.model_copy(
            update={
                "payload": payload,
                "redaction": Redaction(original_digest=env.digest(), findings=dict(counts)),
            }
        )
        return clean, findings


_default = Redactor()


def redact_text(text: str) -> RedactionResult:
    return _default.redact_text(text)


def redact_envelope(env: Envelope) -> tuple[Envelope, list[Finding]]:
    return _default.redact_envelope(env)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in) and exception text without secrets."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or _default

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor.redact_text(message).text
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redactor.redact_text(text).text
        return True
