"""Admin stability: 3 election processes with real (unpinned) scores on a busy machine.

A fresh nats-server and three election replicas measuring their own scores (CPU
and memory headroom, round trip, uptime); beside them, busy-loop processes keep
every core loaded (and, with ``--traffic``, a publisher keeps the bus busy).
After the first admin is elected, every replica's ``/v1/admin`` is polled for
``--minutes``; any change of admin or term is a change. The target is none:
measurement noise must never move the admin (ARCHITECTURE.md §7).

    .venv/bin/python bench/bench_stability.py [--minutes 10] [--load 2] [--traffic 0] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from figures import Figure, at_most, report

from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess

#: reads need the read scope (CHORUS_READ_TOKENS below)
READER = {"Authorization": "Bearer bench"}

NODES = ("s1", "s2", "s3")

BUSY_LOOP = "while True: pass"

PUBLISHER = """
import asyncio, sys, nats
async def main(url, rate):
    nc = await nats.connect(url)
    payload = b"x" * 256
    while True:
        started = asyncio.get_running_loop().time()
        for _ in range(max(1, rate // 10)):
            await nc.publish("bench.stability.noise", payload)
        await nc.flush()
        await asyncio.sleep(max(0.0, 0.1 - (asyncio.get_running_loop().time() - started)))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def start(node: str, nats_url: str, base: Path) -> ServiceProcess:
    return ServiceProcess(
        instance=node,
        service="election",
        port=free_port(),
        env={
            "CHORUS_NATS_URL": nats_url,
            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
            "CHORUS_READ_TOKENS": "bench",
            "CHORUS_NODE_ID": node,
            "CHORUS_DATA_DIR": str(base / node),
            "CHORUS_LOG_LEVEL": "INFO",
        },
        log_path=base / f"{node}.log",
    ).start()


def views(procs: dict[str, ServiceProcess]) -> dict[str, dict[str, object]]:
    out = {}
    for node, proc in procs.items():
        try:
            out[node] = httpx.get(f"{proc.url}/v1/admin", timeout=1.0, headers=READER).json()
        except (httpx.HTTPError, ValueError):
            continue
    return out


def metric_sum(procs: dict[str, ServiceProcess], name: str, label: str) -> dict[str, float]:
    """``name`` summed over the replicas, by the value of ``label`` (non-zero only)."""
    totals: dict[str, float] = {}
    for proc in procs.values():
        try:
            text = httpx.get(f"{proc.url}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            key = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return {k: v for k, v in sorted(totals.items()) if v}


def run(seconds: float, load: int, traffic: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = NatsServer(store_dir=base / "nats").start()
        procs = {n: start(n, server.url, base) for n in NODES}
        helpers: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + 60
            while not all(p.is_ready() for p in procs.values()):
                assert time.monotonic() < deadline, "the replicas did not get ready"
                time.sleep(0.1)
            helpers += [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(load)]
            if traffic:
                helpers.append(
                    subprocess.Popen([sys.executable, "-c", PUBLISHER, server.url, str(traffic)])
                )
            first: tuple[object, object] | None = None
            while first is None:
                assert time.monotonic() < deadline, "no admin"
                seen = {(v.get("admin"), v.get("term")) for v in views(procs).values()}
                if len(seen) == 1 and None not in next(iter(seen)):
                    first = next(iter(seen))
                time.sleep(0.1)
            print(
                f"admin {first[0]} with term {first[1]}; watching for {seconds:.0f} s", flush=True
            )
            changes: list[tuple[float, str, object, object]] = []
            last = {n: first for n in procs}
            started = time.monotonic()
            polls = 0
            while time.monotonic() - started < seconds:
                for node, view in views(procs).items():
                    now = (view.get("admin"), view.get("term"))
                    if now != last[node] and now[0] is not None:
                        changes.append((time.monotonic() - started, node, *now))
                        print(f"  {changes[-1][0]:6.1f} s: {node} sees admin {now}", flush=True)
                        last[node] = now
                polls += 1
                time.sleep(0.25)
            terms = {term for _, _, _, term in changes} - {first[1]}
            logs = [p.log_tail(4000) for p in procs.values()] if terms else []
            return {
                "term_changes": len(terms),
                "polls": polls,
                "admin_changes": metric_sum(procs, "chorus_election_admin_changes_total", "cause"),
                "stepdowns": metric_sum(procs, "chorus_election_stepdowns_total", "reason"),
                "elections": metric_sum(procs, "chorus_election_elections_total", "trigger"),
                "logs": logs,
            }
        finally:
            for helper in helpers:
                helper.kill()
                helper.wait()
            for p in procs.values():
                p.kill()
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--load", type=int, default=os.cpu_count() or 2, help="busy-loop processes beside"
    )
    parser.add_argument("--traffic", type=int, default=0, help="bus messages per second beside")
    parser.add_argument("--quick", action="store_true", help="20 s instead of --minutes")
    args = parser.parse_args()
    seconds = 20.0 if args.quick else args.minutes * 60
    result = run(seconds, args.load, args.traffic)
    span = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:.0f} s"
    conditions = (
        f"3 election processes, real scores, {args.load} busy-loop processes on "
        f"{os.cpu_count()} cores, {args.traffic} bus msgs/s, {span}"
    )
    print(f"admin changes by cause (summed over replicas): {result['admin_changes']}")
    print(f"step-downs by reason: {result['stepdowns']}")
    print(f"elections by trigger: {result['elections']}")
    for tail in result["logs"]:  # type: ignore[attr-defined]
        print(tail)
    figures = [
        Figure(
            "stability",
            f"admin term changes in {span} under CPU load",
            float(result["term_changes"]),  # type: ignore[arg-type]
            "changes",
            target=at_most(0),
            conditions=conditions,
        ),
    ]
    report(f"admin stability with real scores on a busy machine: {conditions}", figures)


if __name__ == "__main__":
    main()
