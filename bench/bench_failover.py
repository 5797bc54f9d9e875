"""Admin failover after SIGKILL: p50/p99 over many trials, default profile beside chorus-compat.

Three election processes on a fresh nats-server, each measuring its own score
(nothing pinned: no ``CHORUS_ELECTION_SCORE_OVERRIDE``); each trial SIGKILLs
the admin and measures, from the kill, until another participant reports
itself admin with a higher term (polling every 10 ms), then restarts the
killed process.

    .venv/bin/python bench/bench_failover.py [--trials 30] [--compat-trials 3] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from figures import Figure, at_most, percentile, report

from chorus_common.natsserver import NatsServer, free_port
from chorus_common.processes import ServiceProcess

#: reads need the read scope (CHORUS_READ_TOKENS below)
READER = {"Authorization": "Bearer bench"}


def start(node: str, nats_url: str, base: Path, profile: str) -> ServiceProcess:
    return ServiceProcess(
        instance=node,
        service="election",
        port=free_port(),
        env={
            "CHORUS_NATS_URL": nats_url,
            "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
            "CHORUS_READ_TOKENS": "bench",
            "CHORUS_NODE_ID": node,
            "CHORUS_ELECTION_PROFILE": profile,
            "CHORUS_DATA_DIR": str(base / node),
            "CHORUS_LOG_LEVEL": "WARNING",
        },
        log_path=base / f"{node}.log",
    ).start()


def admin_of(procs: dict[str, ServiceProcess]) -> tuple[str, int] | None:
    found = []
    for node, proc in procs.items():
        if not proc.running:
            continue
        try:
            view = httpx.get(f"{proc.url}/v1/admin", timeout=0.2, headers=READER).json()
        except (httpx.HTTPError, ValueError):
            continue
        if view.get("is_self"):
            found.append((node, view["term"]))
    return found[0] if len(found) == 1 else None


def run(profile: str, trials: int) -> list[float]:
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = NatsServer(store_dir=base / "nats").start()
        procs = {n: start(n, server.url, base, profile) for n in ("b1", "b2", "b3")}
        try:
            deadline = time.monotonic() + 120
            while admin_of(procs) is None:
                assert time.monotonic() < deadline, "no admin"
                time.sleep(0.05)
            for _ in range(trials):
                current = admin_of(procs)
                while current is None:
                    time.sleep(0.02)
                    current = admin_of(procs)
                node, term = current
                killed = time.monotonic()
                procs[node].kill()
                while True:
                    now_admin = admin_of(procs)
                    if now_admin and now_admin[0] != node and now_admin[1] > term:
                        break
                    time.sleep(0.01)
                times.append(time.monotonic() - killed)
                procs[node] = start(node, server.url, base, profile)
                while not procs[node].is_ready():
                    time.sleep(0.05)
                time.sleep(0.5)
        finally:
            for p in procs.values():
                p.kill()
            server.kill()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--compat-trials", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 trials, no chorus-compat ones")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.compat_trials = 2, 0
    default = run("default", args.trials)
    conditions = f"3 election processes, real scores, {len(default)} SIGKILLs of the admin"
    figures = [
        Figure("failover", "failover p50 (default profile)", statistics.median(default), "s"),
        Figure(
            "failover",
            "failover p99 (default profile)",
            percentile(default, 0.99),
            "s",
            target=at_most(1.5),
            conditions=conditions,
        ),
    ]
    if args.compat_trials:
        compat = run("chorus-compat", args.compat_trials)
        figures.append(
            Figure(
                "failover",
                "failover p50 (default profile)",
                statistics.median(default),
                "s",
                "chorus-compat profile (5 s heartbeat, 15 s failover)",
                statistics.median(compat),
                conditions=f"{len(compat)} compat trials",
            )
        )
    report(f"failover after SIGKILL of the admin: {conditions}", figures)


if __name__ == "__main__":
    main()
