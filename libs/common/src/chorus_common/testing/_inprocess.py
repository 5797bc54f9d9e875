"""Run a Service inside the test's event loop on a free port, with real HTTP and NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from chorus_common.http_protocols import server_options
from chorus_common.service import Service
from chorus_common.testing._wait import wait_until


@contextlib.asynccontextmanager
async def serve_in_process(service: Service, *, ready: bool = True) -> AsyncIterator[str]:
    """Serve ``service`` on 127.0.0.1 (port from its settings, 0 = any) and yield its URL."""
    config = uvicorn.Config(
        service.app,
        host="127.0.0.1",
        port=service.settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        **server_options(service.settings),
    )
    server = uvicorn.Server(config)
    service._server = server  # the service reports its real URL
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=10, message="server start")
        if task.done():
            task.result()
        if ready:
            await wait_until(lambda: service.ready, timeout=15, message=f"{service.name} ready")
        yield service.http_url
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
