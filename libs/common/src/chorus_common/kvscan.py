"""Reading every value under a KV key pattern in one pass.

``KeyValue.keys()`` followed by a ``get`` per key costs a round trip per key and
leaves an ephemeral consumer on the server for five minutes (nats-py's default
inactivity threshold); a coordinator listing agents every second kept ~300 of
them alive. One consumer delivering the last value per key brings everything in
a single stream of messages, and it is deleted as soon as the scan is done.

The consumer is a pull consumer, not nats-py's ``watch``: a watch's consumer starts
pushing at once, and nats-py decides the bucket is empty when the consumer's info
says nothing is pending and no message has arrived yet, which is also the case
when every message is still on its way. Such a scan came back empty or short now
and then (the coordinator's task listing lost its last page). A pull consumer
sends nothing until asked, so its ``num_pending`` at creation is the whole answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, DeliverPolicy

from chorus_common.errors import UnavailableError

__all__ = ["scan"]

#: how long the server keeps a scan's consumer should the scan die before deleting it
SCAN_CONSUMER_GRACE = 2.0
#: what a key's last message says when the key is gone (a delete, a purge, a TTL marker)
_GONE_OPERATIONS = {"DEL", "PURGE"}
_GONE_MARKERS = {"MaxAge", "Purge", "Remove"}


def _gone(msg: Msg) -> bool:
    headers = msg.headers or {}
    return (
        headers.get("KV-Operation") in _GONE_OPERATIONS
        or headers.get("Nats-Marker-Reason") in _GONE_MARKERS
    )


async def scan(
    nc: Client, bucket: str, pattern: str = ">", timeout: float = 10.0
) -> dict[str, bytes]:
    """Latest value of every live key of ``bucket`` matching ``pattern`` (``agent.>``).

    Keys created while the scan runs may or may not be in it; every key live when it
    began is, with one exception: in a bucket that keeps one revision per key, a key
    rewritten during the scan can be missed (its old message is gone before it is
    delivered, and the server's pending count does not see the new one coming).
    """
    js = nc.jetstream()
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    name = uuid.uuid4().hex
    info = await js.add_consumer(
        stream,
        ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            filter_subject=prefix + pattern,
            inactive_threshold=SCAN_CONSUMER_GRACE,
            mem_storage=True,
        ),
    )
    out: dict[str, bytes] = {}
    try:
        if not info.num_pending:
            return out
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def take(msg: Msg) -> None:
            if done.done():
                return
            if not msg.data and msg.headers and "Status" in msg.headers:
                status = f"{msg.headers['Status']} {msg.headers.get('Description', '')}"
                done.set_exception(UnavailableError(f"scan of {bucket} cut short: {status}"))
                return
            key = msg.subject[len(prefix) :]
            if _gone(msg):
                out.pop(key, None)
            else:
                out[key] = msg.data
            if msg.metadata.num_pending == 0:  # caught up with the stream
                done.set_result(None)

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=take)
        try:
            request = {"batch": 1_000_000, "expires": int(timeout * 1e9)}
            await nc.publish(
                f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{name}",
                json.dumps(request).encode(),
                reply=inbox,
            )
            try:
                await asyncio.wait_for(done, timeout)
            except TimeoutError:
                raise UnavailableError(f"scan of {bucket} did not finish in {timeout} s") from None
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)
    return out
