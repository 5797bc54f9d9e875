"""DHT latency with 5 real node processes (R = 3), and lookup hops in a 1,000-node simulation.

    .venv/bin/python bench/bench_dht.py [--ops 1000] [--nodes 1000]

Put/get go over REST on loopback to node processes that talk over a real
nats-server; p50/p99 are printed per operation, for the default write quorum
W = 2 (a put is acknowledged once 2 of the 3 replicas hold it, a get needs
R - W + 1 = 2 answers) and beside it, in a second constellation of the same
run, W = 1 (a put acknowledged by one copy, a get needing all 3). The simulation runs the same
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


def latency(ops: int, write_quorum: int) -> tuple[list[float], list[float]]:
    """(put seconds, get seconds) of ``ops`` each on five nodes with W = ``write_quorum``."""
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
                            "CHORUS_DHT_WRITE_QUORUM": str(write_quorum),
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
    return puts, gets


def quorum_figures(ops: int) -> list[Figure]:
    """Put/get p50/p99 with W = 2 (the default, what the bars are for), each beside the
    same figure with W = 1 measured in the same run."""
    w2, w1 = latency(ops, 2), latency(ops, 1)
    conditions = f"5 node processes, R=3, SQLite, REST over loopback, {ops} ops"
    out = []
    for name, index, q, target in (
        ("put p50", 0, 0.5, None),
        ("put p99", 0, 0.99, at_most(10.0)),
        ("get p50", 1, 0.5, None),
        ("get p99", 1, 0.99, at_most(5.0)),
    ):
        pick = statistics.median if q == 0.5 else (lambda xs: percentile(xs, 0.99))
        out.append(
            Figure(
                "dht",
                f"{name} W=2",
                pick(w2[index]) * 1000,
                "ms",
                "W=1",
                pick(w1[index]) * 1000,
                target,
                conditions,
            )
        )
    return out


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
    report("dht:", [*quorum_figures(args.ops), simulation(args.nodes)])
