"""DHT latency with 5 real node processes (R = 3), and lookup hops in a 1,000-node simulation.

    .venv/bin/python bench/bench_dht.py [--ops 1000] [--nodes 1000]

Put/get go over REST on loopback to node processes that talk over a real
nats-server; p50/p99 are printed per operation. The simulation runs the same
iterative-lookup core (``chorus_dht.routing``) over 1,000 in-process routing
tables and prints the mean number of lookup rounds beside log2(N).

A thousand operations of each kind by default: the p99 of 200 was the second
slowest sample, so one scheduling hiccup on a two-core machine moved it by
milliseconds from run to run.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from figures import Figure, at_most, percentile, report

from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess
from chorus_common.sealed import RoleKeyPair
from chorus_dht.routing import Lookup, RoutingTable, node_id_of

ADMIN = {"Authorization": "Bearer bench"}


def latency(ops: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = NatsServer(store_dir=base / "nats").start()
        procs = []
        try:
            for i in range(5):
                procs.append(
                    ServiceProcess(
                        instance=f"b{i}",
                        service="dht",
                        port=free_port(),
                        env={
                            "CHORUS_NATS_URL": server.url,
                            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
                            "CHORUS_NODE_ID": f"b{i}",
                            "CHORUS_ADMIN_TOKEN": "bench",
                            "CHORUS_DATA_DIR": str(base / f"b{i}"),
                            "CHORUS_LOG_LEVEL": "WARNING",
                            "CHORUS_DHT_ANNOUNCE_INTERVAL_SECONDS": "0.3",
                        },
                        log_path=base / f"b{i}.log",
                    ).start()
                )
            for p in procs:
                while not p.is_ready():
                    time.sleep(0.1)
            time.sleep(1.5)  # membership settles
            role = RoleKeyPair.generate()
            client = httpx.Client(headers=ADMIN, timeout=10)
            client.post(
                f"{procs[0].url}/v1/roles/bench/keys", json={"public_key": role.public_text}
            )
            puts, gets = [], []
            for i in range(ops):
                address = quote(f"ucxl://bench:bench@perf:run/*^/k{i}.json", safe="")
                node = procs[i % 5]
                started = time.perf_counter()
                client.put(
                    f"{node.url}/v1/ucxl/{address}", json={"value": {"i": i}, "roles": ["bench"]}
                ).raise_for_status()
                puts.append(time.perf_counter() - started)
            for i in range(ops):
                address = quote(f"ucxl://bench:bench@perf:run/*^/k{i}.json", safe="")
                node = procs[(i + 2) % 5]
                started = time.perf_counter()
                client.get(f"{node.url}/v1/ucxl/{address}").raise_for_status()
                gets.append(time.perf_counter() - started)
        finally:
            for p in procs:
                p.kill()
            server.kill()
    conditions = f"5 node processes, R=3, SQLite, REST over loopback, {ops} ops"
    return [
        Figure("dht", "put p50", statistics.median(puts) * 1000, "ms", conditions=conditions),
        Figure("dht", "put p99", percentile(puts, 0.99) * 1000, "ms", conditions=conditions),
        Figure("dht", "get p50", statistics.median(gets) * 1000, "ms", conditions=conditions),
        Figure(
            "dht",
            "get p99",
            percentile(gets, 0.99) * 1000,
            "ms",
            target=at_most(5.0),
            conditions=conditions,
        ),
    ]


def simulation(n: int, lookups: int = 200) -> Figure:
    rng = random.Random(1)
    names = [f"sim{i}" for i in range(n)]
    ids = {name: node_id_of(name) for name in names}
    tables: dict[str, RoutingTable] = {}
    for name in names:
        table = RoutingTable(ids[name], k=20)
        # each node knows its closest neighbours and a random spread, as Kademlia refresh leaves it
        for other in sorted(names, key=lambda o: ids[o] ^ ids[name])[1:21] + rng.sample(names, 40):
            if other != name:
                table.add(ids[other], other)
        tables[name] = table
    hops = []
    for _ in range(lookups):
        start = rng.choice(names)
        target = rng.getrandbits(256)
        search = Lookup(target, k=20, alpha=3)
        search.seed(tables[start].closest(target, 20))
        while not search.done:
            batch = search.next_batch()
            if not batch:
                break
            for _node, name in batch:
                search.answer(tables[name].closest(target, 20))
        hops.append(search.hops)
    return Figure(
        "dht",
        "mean lookup rounds",
        statistics.mean(hops),
        "rounds",
        "log2(N)",
        math.log2(n),
        at_most(1.0, on="ratio"),
        f"{n}-node simulation, k=20, alpha=3, {lookups} lookups",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    report("dht:", [*latency(args.ops), simulation(args.nodes)])
