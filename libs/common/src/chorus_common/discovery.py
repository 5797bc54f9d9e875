"""Finding the bus on a LAN with mDNS, as CHORUS did: ``_chorus._tcp.local.`` carries the NATS URL.

`chorus up` advertises its bus; an agent on the same LAN calls
:func:`discover_bus` instead of being told ``CHORUS_NATS_URL``.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = ["Advertisement", "advertise_bus", "advertise_bus_blocking", "discover_bus"]

SERVICE_TYPE = "_chorus._tcp.local."


@dataclass
class Advertisement:
    zeroconf: AsyncZeroconf
    info: AsyncServiceInfo

    async def close(self) -> None:
        await self.zeroconf.async_unregister_service(self.info)
        await self.zeroconf.async_close()


async def advertise_bus(
    nats_url: str,
    cluster: str,
    port: int,
    host: str = "127.0.0.1",
    interfaces: list[str] | None = None,
) -> Advertisement:
    zc = AsyncZeroconf(interfaces=interfaces or [host], ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        f"chorus-{cluster}-{port}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(host)],
        port=port,
        properties={"nats": nats_url, "cluster": cluster},
    )
    await zc.async_register_service(info)
    return Advertisement(zc, info)


async def discover_bus(
    timeout: float = 3.0, interfaces: list[str] | None = None
) -> list[dict[str, str]]:
    """Every CHORUS bus answering on the LAN within ``timeout``: ``[{"nats": url, "cluster": name}]``."""
    zc = AsyncZeroconf(interfaces=interfaces or ["127.0.0.1"], ip_version=IPVersion.V4Only)
    found: dict[str, dict[str, str]] = {}
    names: asyncio.Queue[str] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added:
            names.put_nowait(name)

    browser = AsyncServiceBrowser(zc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                name = await asyncio.wait_for(names.get(), remaining)
            except TimeoutError:
                break
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if await info.async_request(zc.zeroconf, 1000):
                props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
                found[name] = {"nats": props.get("nats", ""), "cluster": props.get("cluster", "")}
    finally:
        await browser.async_cancel()
        await zc.async_close()
    return list(found.values())


def advertise_bus_blocking(
    nats_url: str, cluster: str, port: int, host: str = "127.0.0.1"
) -> Zeroconf:
    """The same advertisement for synchronous callers (the `chorus up` command); close() withdraws it."""
    from zeroconf import ServiceInfo

    zc = Zeroconf(interfaces=[host], ip_version=IPVersion.V4Only)
    zc.register_service(
        ServiceInfo(
            SERVICE_TYPE,
            f"chorus-{cluster}-{port}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(host)],
            port=port,
            properties={"nats": nats_url, "cluster": cluster},
        )
    )
    return zc
