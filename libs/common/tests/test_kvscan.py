"""One-pass KV scans on a real nats-server: live values only, and no consumer left behind."""

import asyncio

from nats.js.api import KeyValueConfig

from chorus_common.bus import Bus
from chorus_common.kvscan import scan
from chorus_common.testing import wait_until


async def test_scan_returns_live_values_and_leaves_no_consumer(bus_client: Bus) -> None:
    kv = await bus_client.jetstream.create_key_value(KeyValueConfig(bucket="scan-test", history=5))
    await kv.put("agent.a", b'{"agent": "a"}')
    await kv.put("agent.b", b'{"agent": "b"}')
    await kv.put("agent.a", b'{"agent": "a", "v": 2}')
    await kv.put("task.x", b"{}")
    await kv.delete("agent.b")

    assert await scan(bus_client.client, "scan-test", "agent.>") == {
        "agent.a": b'{"agent": "a", "v": 2}'
    }
    assert set(await scan(bus_client.client, "scan-test")) == {"agent.a", "task.x"}
    assert await scan(bus_client.client, "scan-test", "nobody.>") == {}

    async def no_consumers() -> bool:
        info = await bus_client.jetstream.stream_info("KV_scan-test")
        return info.state.consumer_count == 0

    # the scans' consumers go within seconds (keys() + get left one for five minutes)
    await wait_until(no_consumers, timeout=15, message="scan consumers gone")


async def test_a_scan_never_comes_back_short(bus_client: Bus) -> None:
    """nats-py's watch could call a bucket empty while its messages were still on the
    way; the coordinator's task listing then lost its last page now and then."""
    kv = await bus_client.jetstream.create_key_value(KeyValueConfig(bucket="scan-many", history=2))
    for i in range(300):
        await kv.put(f"task.t{i}", b"{}")
    for i in range(0, 300, 3):
        await kv.put(f"task.t{i}", b'{"v": 2}')  # the last value of a key is what counts
    for _ in range(40):
        values = await scan(bus_client.client, "scan-many", "task.>")
        assert len(values) == 300
        assert values["task.t3"] == b'{"v": 2}' and values["task.t4"] == b"{}"
    info = await bus_client.jetstream.stream_info("KV_scan-many")
    assert info.state.consumer_count == 0  # each scan deletes its consumer when done


async def test_keys_live_throughout_a_scan_are_in_it_while_others_are_written(
    bus_client: Bus,
) -> None:
    # the task board keeps history: a rewritten key's old revision stays to be delivered
    kv = await bus_client.jetstream.create_key_value(KeyValueConfig(bucket="scan-busy", history=10))
    for i in range(200):
        await kv.put(f"agent.a{i}", b"{}")
    stop = asyncio.Event()

    async def churn() -> None:  # new keys come, and the old ones change
        n = 0
        while not stop.is_set():
            await kv.put(f"agent.new{n}", b"{}")
            await kv.put(f"agent.a{n % 200}", b'{"beat": 1}')
            n += 1

    writer = asyncio.create_task(churn())
    try:
        for _ in range(20):
            values = await scan(bus_client.client, "scan-busy", "agent.>")
            assert {f"agent.a{i}" for i in range(200)} <= set(values)
    finally:
        stop.set()
        await writer
