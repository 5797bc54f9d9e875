"""Soak: the `chorus up` constellation under steady load for a long while; memory must stay flat.

Starts the same constellation as `chorus up` (embedded NATS on a free port,
every service as a process), runs the chaos workload at a steady, moderate pace
(envelopes on the bus and through the gateway, tasks created, claimed and
completed, DHT records stored, the admin watched), samples every process's
resident memory, and at the end checks the same invariants as the chaos suite.
Writes bench/SOAK.md: RSS after warm-up, at half time and at the end, the
least-squares slope, and a verdict per process.

    .venv/bin/python bench/soak.py [--minutes 30] [--sample 30] [--out bench/SOAK.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_up import rss_mb
from run_all import commit, machine_section

from chorus_cli.constellation import Constellation
from chorus_cli.testing.chaos import Pace, Workload
from chorus_cli.testing.chaos import invariants as inv
from chorus_common.natsserver import free_port

HERE = Path(__file__).resolve().parent
STEADY = Pace(publish=0.05, gateway=0.1, task=1.0, claim=0.25, dht=0.5, admin_watch=1.0)
#: growth after warm-up allowed before a process is called not flat
FLAT_MB, FLAT_FRACTION = 5.0, 0.05
#: growth over the second half below which a process that grew has levelled off (a bounded
#: cache filling up, such as BACKBEAT's book of the last 5000 operations)
LEVEL_MB = 1.0
#: the broker keeps the streams' messages and its own caches; it is reported, not judged
BROKER = "nats-server"


@dataclass
class UpTargets:
    """`chorus up`'s constellation, as the workload sees it."""

    up: Constellation
    replicas: int = 1

    @property
    def nats_url(self) -> str:
        assert self.up.nats_url is not None
        return self.up.nats_url

    @property
    def admin_token(self) -> str:
        return self.up.admin_token

    def instances(self, service: str) -> list[tuple[str, str]]:
        return [
            (p.instance, p.url) for p in self.up.processes if p.service == service and p.running
        ]


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    if len(samples) < 2:
        return 0.0
    xs, ys = [t for t, _ in samples], [m for _, m in samples]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return (
        0.0
        if var == 0
        else 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    )


async def soak(minutes: float, sample_every: float, out: Path) -> bool:
    seconds = minutes * 60
    measured = commit()  # the code the services run is the code at their start
    with tempfile.TemporaryDirectory() as tmp:
        up = Constellation(data_dir=Path(tmp), nats_port=free_port())
        up.start_nats()
        up.start_services()
        try:
            await asyncio.gather(*(p.wait_ready(60) for p in up.processes))
            pids = {p.instance: p.proc.pid for p in up.processes if p.proc}
            assert up.nats is not None and up.nats.proc is not None
            pids["nats-server"] = up.nats.proc.pid
            samples: dict[str, list[tuple[float, float]]] = {n: [] for n in pids}
            workload = Workload(UpTargets(up), random.Random(1), STEADY)
            started = time.monotonic()

            async def sample() -> None:
                while (elapsed := time.monotonic() - started) < seconds:
                    for name, pid in pids.items():
                        samples[name].append((elapsed, rss_mb(pid)))
                    worst = max(pids, key=lambda n: samples[n][-1][1])
                    print(
                        f"[{elapsed / 60:5.1f}/{minutes:g} min] {workload.seen.summary()}; "
                        f"largest RSS {worst} {samples[worst][-1][1]:.1f} MB",
                        flush=True,
                    )
                    await asyncio.sleep(sample_every)

            await asyncio.gather(workload.run(seconds), sample())
            for name, pid in pids.items():
                samples[name].append((time.monotonic() - started, rss_mb(pid)))
            seen = workload.seen
            violations = inv.envelopes_once(
                seen.acked, seen.attempted, await workload.stored_envelope_ids()
            )
            violations += inv.single_holder_per_term(await workload.tasks_on_board())
            violations += inv.completed_by_one_agent(seen.completions)
            violations += inv.no_overlapping_admin_terms(seen.admin_answers)
            violations += inv.records_readable(seen.dht_written, await workload.read_records())
            await workload.close()
        finally:
            up.stop()
    flat = write_report(out, minutes, samples, seen.summary(), violations, measured)
    print(f"wrote {out}")
    return flat and not violations


def write_report(
    out: Path,
    minutes: float,
    samples: dict[str, list[tuple[float, float]]],
    load: str,
    violations: list[str],
    measured: str | None = None,
) -> bool:
    warm = minutes * 60 * 0.1  # the first tenth is warm-up: imports, caches, connection pools
    rows, all_flat = [], True
    for name, points in samples.items():
        steady = [(t, m) for t, m in points if t >= warm] or points
        first, mid, last = steady[0][1], steady[len(steady) // 2][1], steady[-1][1]
        growth, late = last - first, last - mid
        if growth <= max(FLAT_MB, FLAT_FRACTION * first):
            verdict = "flat"
        elif late <= LEVEL_MB:
            verdict = "levelled off"
        else:
            verdict = "**growing**"
        if name == BROKER:
            verdict += " (broker: not judged)"
        else:
            all_flat &= not verdict.startswith("**")
        rows.append(
            f"| {name} | {points[0][1]:.1f} | {first:.1f} | {mid:.1f} | {last:.1f} | "
            f"{growth:+.1f} | {late:+.1f} | {slope_mb_per_hour(steady):+.1f} | {verdict} |"
        )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Soak results",
        "",
        f"Written by `make soak` (`bench/soak.py --minutes {minutes:g}`) on {now}, "
        f"commit {measured or commit()}. The `chorus up` constellation ran under steady load "
        f"for {minutes:g} minutes; resident memory (MB) of every process was sampled. "
        f"Flat means growth after warm-up (the first tenth) within "
        f"{FLAT_MB:g} MB or {FLAT_FRACTION:.0%}; levelled off means it grew more but not "
        f"by more than {LEVEL_MB:g} MB over the second half (a bounded cache filled). "
        f"nats-server's memory follows the messages its streams hold and is reported, "
        f"not judged.",
        "",
        *machine_section(),
        "",
        "## Load",
        "",
        f"Pace (seconds between actions): {STEADY}.",
        "",
        f"Done: {load}.",
        "",
        "Invariants after the run: "
        + ("all held." if not violations else f"**{len(violations)} violations**:"),
        *(f"- {v}" for v in violations[:30]),
        "",
        "## Resident memory",
        "",
        "| process | at start | after warm-up | half time | end | growth | 2nd half "
        "| slope MB/h | |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    out.write_text("\n".join(lines) + "\n")
    return all_flat


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=HERE / "SOAK.md")
    args = parser.parse_args()
    raise SystemExit(0 if asyncio.run(soak(args.minutes, args.sample, args.out)) else 1)
