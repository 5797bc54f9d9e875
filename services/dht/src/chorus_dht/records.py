"""What a stored DHT record is, and how a node tells a good one from damage (no I/O).

A record is a JSON object written by the REST handler that took the value; every node
that holds a copy checks it before serving, storing or pushing it. Damage comes in two
kinds: bytes that do not decode to a record at all (``decode`` answers a reason and the
storage quarantines the row), and a record whose digest no longer matches its content
(``intact`` is false: the node quarantines it in its repair pass).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["DIGESTED", "decode", "intact", "malformed", "record_digest"]

#: the fields the digest covers: what a reader is served and what decides which copy wins
DIGESTED = ("key", "address", "sealed", "version", "deleted", "expires_at")


def record_digest(record: dict[str, Any]) -> str:
    body = {k: record.get(k) for k in DIGESTED}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def intact(record: dict[str, Any] | None) -> bool:
    """A replica whose bytes changed is detected (and repaired from a good copy)."""
    return record is not None and record.get("digest") == record_digest(record)


def malformed(record: Any, key: str | None = None) -> str | None:
    """Why ``record`` cannot be a stored record (None when its shape is right).

    Every later step indexes these fields (repair compares ``version``, listings read
    ``address``), so a row that lacks one would raise there; it is
    refused at the door instead, whatever its digest says. ``key``, when given, is the
    key the row is stored under, which the record must name.
    """
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    if not isinstance(record.get("key"), str) or (key is not None and record["key"] != key):
        return "key missing or not the key it is stored under"
    if not isinstance(record.get("address"), str):
        return "address missing"
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        return "version missing or not an integer"
    if not isinstance(record.get("deleted", False), bool):
        return "deleted is not a boolean"
    expires = record.get("expires_at")
    if expires is not None and (not isinstance(expires, int | float) or isinstance(expires, bool)):
        return "expires_at is not a number"
    return None


def decode(key: str, raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a readable row; (None, reason) for one to quarantine."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"unreadable: {type(exc).__name__}"
    reason = malformed(record, key)
    if reason is not None:
        return None, f"malformed: {reason}"
    return record, None
