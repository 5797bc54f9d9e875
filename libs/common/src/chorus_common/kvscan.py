"""Reading every value under a KV key pattern in one pass.

``KeyValue.keys()`` followed by a ``get`` per key costs a round trip per key and
leaves an ephemeral consumer on the server for five minutes (nats-py's default
inactivity threshold); a coordinator listing agents every second kept ~300 of
them alive. One watch delivering the last value per key brings everything in a
single stream of messages, and its consumer is gone seconds after the scan.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

#: how long the server keeps a scan's consumer after the scan stopped listening
SCAN_CONSUMER_GRACE = 2.0


async def scan(kv: KeyValue, pattern: str = ">", timeout: float = 10.0) -> dict[str, bytes]:
    """Latest value of every live key matching ``pattern`` (``agent.>``, ``task.>``)."""
    out: dict[str, bytes] = {}
    watcher = await kv.watch(pattern, inactive_threshold=SCAN_CONSUMER_GRACE)
    try:
        async with asyncio.timeout(timeout):
            async for entry in watcher:
                if entry is None:  # the bucket as it stood when the scan began is in
                    break
                if entry.operation in (KV_DEL, KV_PURGE) or entry.value is None:
                    out.pop(entry.key, None)
                else:
                    out[entry.key] = entry.value
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return out
