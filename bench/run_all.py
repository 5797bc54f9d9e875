"""`make bench`: run every bench script and write bench/RESULTS.md.

Each ``bench_*.py`` runs as its own process (as a person would run it) with
``CHORUS_BENCH_OUT`` pointing at a scratch file its ``report()`` appends
figures to; this writer only reads those figures, so what RESULTS.md says is
exactly what the scripts measured. The machine, the date and the commit head
the file because the numbers mean nothing without them.

    .venv/bin/python bench/run_all.py [--quick] [--only envelopes,dht] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from figures import OUT_ENV, Figure, fmt

from chorus_common.natsserver import nats_server_binary

HERE = Path(__file__).resolve().parent

#: script → (full arguments, --quick arguments); the full ones are each script's defaults.
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "envelopes": ([], ["--messages", "300", "--rounds", "1"]),
    "gateway": ([], ["--messages", "300", "--batch", "100", "--rounds", "1"]),
    # issue 20's bar: 500 SSE + 200 WebSocket idle subscribers, p99 within 2x of none
    "subscribers": ([], ["--batches", "10", "--sse", "100", "--ws", "40"]),
    "failover": ([], ["--trials", "2", "--compat-trials", "0"]),
    "dht": ([], ["--ops", "20", "--nodes", "200"]),
    "coordinator": ([], ["--tasks", "10"]),
    "up": ([], ["--trials", "1", "--idle", "2"]),
    # issue 19's bar: 10 minutes, 3 replicas, real scores, 2 busy loops, 500 bus msgs/s
    "stability": (["--minutes", "10", "--load", "2", "--traffic", "500"], ["--quick"]),
}


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    nats_version = subprocess.run(
        [str(nats_server_binary()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "nats-server": nats_version or "unknown",
    }


def machine_section(info: dict[str, str] | None = None) -> list[str]:
    """The "Machine" section of a report: numbers mean nothing without it."""
    info = info if info is not None else machine()
    return ["## Machine", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in info.items())]


def commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    return (result.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def run_bench(name: str, args: Sequence[str], out: Path) -> tuple[list[Figure], float, str]:
    """Run one script; returns its figures, its wall time, and its output when it failed."""
    env = {**os.environ, OUT_ENV: str(out), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    print(f"== bench_{name}.py {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [sys.executable, str(HERE / f"bench_{name}.py"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    elapsed = time.monotonic() - started
    print(proc.stdout, end="", flush=True)
    figures = (
        [Figure.from_json(line) for line in out.read_text().splitlines() if line]
        if out.exists()
        else []
    )
    failure = "" if proc.returncode == 0 else proc.stdout[-3000:]
    return figures, elapsed, failure


def row(f: Figure) -> str:
    baseline = f"{fmt(f.baseline_value)} ({f.baseline})" if f.baseline_value is not None else "—"
    ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
    target = str(f.target) if f.target else "—"
    met = {None: "—", True: "met", False: "**missed**"}[f.met]
    return f"| {f.name} | {fmt(f.value)} {f.unit} | {baseline} | {ratio} | {target} | {met} |"


HEADER = "| figure | value | baseline (same run) | ratio | target | |\n|---|---|---|---|---|---|"


def render(
    results: dict[str, tuple[list[Figure], float, str]],
    mode: str,
    info: dict[str, str],
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`bench/run_all.py{' --quick' if mode == 'quick' else ''}`) "
        f"on {now}, commit {commit()}. Each figure was measured beside its baseline in the "
        "same run on the same freshly started servers; the ratio is figure / baseline. "
        "The targets are the quality bars of ARCHITECTURE.md §7.",
        "",
        *machine_section(info),
        "",
        "## Targets",
        "",
        HEADER,
    ]
    lines += [row(f) for figs, _, _ in results.values() for f in figs if f.target]
    for name, (figures, elapsed, failure) in results.items():
        lines += ["", f"## {name}", "", f"`bench/bench_{name}.py`, {elapsed:.0f} s wall."]
        conditions = sorted({f.conditions for f in figures if f.conditions})
        lines += [f"Conditions: {c}." for c in conditions]
        lines += ["", HEADER, *(row(f) for f in figures)]
        if failure:
            lines += ["", "**The script failed**; its last output:", "", "```", failure, "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the scripts")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    results: dict[str, tuple[list[Figure], float, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            full, quick = BENCHES[name]
            results[name] = run_bench(
                name, quick if args.quick else full, Path(tmp) / f"{name}.jsonl"
            )
    args.out.write_text(render(results, "quick" if args.quick else "full", machine()))
    print(f"wrote {args.out}")
    failed = [n for n, (_, _, failure) in results.items() if failure]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
