"""One-pass KV scans on a real nats-server: live values only, and no consumer left behind."""

from nats.js.api import KeyValueConfig

from chorus_common.bus import Bus
from chorus_common.kvscan import scan
from chorus_common.testing import wait_until


async def test_scan_returns_live_values_and_leaves_no_consumer(bus_client: Bus) -> None:
    kv = await bus_client.js.create_key_value(KeyValueConfig(bucket="scan-test", history=5))
    await kv.put("agent.a", b'{"agent": "a"}')
    await kv.put("agent.b", b'{"agent": "b"}')
    await kv.put("agent.a", b'{"agent": "a", "v": 2}')
    await kv.put("task.x", b"{}")
    await kv.delete("agent.b")

    assert await scan(kv, "agent.>") == {"agent.a": b'{"agent": "a", "v": 2}'}
    assert set(await scan(kv)) == {"agent.a", "task.x"}
    assert await scan(kv, "nobody.>") == {}

    async def no_consumers() -> bool:
        info = await bus_client.js.stream_info("KV_scan-test")
        return info.state.consumer_count == 0

    # the scans' consumers go within seconds (keys() + get left one for five minutes)
    await wait_until(no_consumers, timeout=15, message="scan consumers gone")
