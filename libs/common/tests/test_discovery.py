"""mDNS: a bus advertised as _chorus._tcp.local. is found by an agent browsing the LAN (loopback here)."""

from chorus_common.discovery import advertise_bus, discover_bus
from chorus_common.natsserver import free_port


async def test_advertised_bus_is_discovered() -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    ad = await advertise_bus(url, "lab", port)
    try:
        found = await discover_bus(timeout=5)
    finally:
        await ad.close()
    assert {"nats": url, "cluster": "lab"} in found
