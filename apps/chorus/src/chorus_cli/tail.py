"""`chorus tail`: a subscription that prints envelopes readably."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.msg import Msg
from rich.console import Console

from chorus_common.envelopes import Envelope
from chorus_common.errors import EnvelopeError, UnavailableError
from chorus_common.subjects import validate_filter


def render(subject: str, data: bytes, raw: bool) -> str:
    if raw:
        return f"[bold]{subject}[/bold] {data.decode(errors='replace')}"
    try:
        env = Envelope.decode(data)
    except EnvelopeError:
        return f"[bold]{subject}[/bold] [dim]{data[:400].decode(errors='replace')}[/dim]"
    who = env.sender + (f" ({env.sender_role})" if env.sender_role else "")
    where = " ".join(
        f"{k}={v}"
        for k, v in (("project", env.project), ("task", env.task), ("thread", env.thread))
        if v
    )
    payload = env.payload.model_dump_json(exclude_none=True)
    return (
        f"[dim]{env.created_at:%H:%M:%S}[/dim] [bold cyan]{env.type.value}[/bold cyan] "
        f"from [green]{who}[/green] {where} [dim]#{env.feed_seq or '-'} {subject}[/dim]\n  {payload}"
    )


async def run_tail(url: str, subject: str, count: int, raw: bool, console: Console) -> None:
    validate_filter(subject)
    try:
        # a cluster's URL (`chorus up --cluster`) lists every member, comma-separated
        servers = [u.strip() for u in url.split(",") if u.strip()]
        nc = await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=-1)
    except Exception as exc:
        raise UnavailableError(f"cannot reach NATS at {url}: {exc}") from None
    seen = 0
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        nonlocal seen
        console.print(render(msg.subject, msg.data, raw), highlight=False)
        seen += 1
        if count and seen >= count:
            done.set()

    await nc.subscribe(subject, cb=on_msg)
    console.print(f"[dim]listening on {subject} at {url}[/dim]")
    try:
        await done.wait()
    finally:
        await nc.drain()
