"""`chorus up` time to ready in each shape, and each service's resident memory once it idles.

Runs the real command a user runs (`chorus up --data-dir <tmp>`, then with
`--ha`, the chart's 14 processes, and `--ha --cluster`, on a 3-node NATS)
several times each, timing from the spawn of the CLI to its "all N services
ready" line; after the last light start it lets the constellation idle, then
reads VmRSS of every service process from /proc (the pids `chorus up` records in
up.json). Each run is stopped with Ctrl-C as a user would.

    .venv/bin/python bench/bench_up.py [--trials 3] [--idle 15] [--shapes light,ha,ha-cluster]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from figures import Figure, at_most, report

CHORUS = str(Path(sys.executable).parent / "chorus")
READY_LINE = "services ready in"

#: shape → (extra `chorus up` options, what runs, target seconds; ARCHITECTURE.md §7)
SHAPES: dict[str, tuple[list[str], str, float]] = {
    "light": ([], "embedded NATS, 9 service processes forked by the CLI", 10.0),
    "ha": (["--ha"], "embedded NATS, the chart's 14 service processes", 20.0),
    "ha-cluster": (
        ["--ha", "--cluster"],
        "3-node NATS cluster (R3), the chart's 14 service processes",
        20.0,
    ),
}


def free_range(count: int) -> int:
    """A first port with ``count`` free ports after it, so runs never meet a NATS on 4222."""
    from chorus_common.natsserver import port_is_free

    rng = random.Random()
    while True:
        base = rng.randrange(20000, 30000)
        if all(port_is_free(p) for p in range(base, base + count)):
            return base


def rss_mb(pid: int) -> float:
    """Resident set size of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_up(
    data_dir: Path, options: list[str] | None = None
) -> tuple[subprocess.Popen[str], float, list[str]]:
    """Spawn `chorus up`; return it, seconds until its ready line, and its output so far."""
    ports = ["--nats-port", str(free_range(3)), "--port-base", str(free_range(14))]
    started = time.monotonic()
    proc = subprocess.Popen(
        [CHORUS, "up", "--data-dir", str(data_dir), *ports, *(options or [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout=120):
        proc.kill()
        raise RuntimeError("chorus up not ready in 120 s:\n" + "\n".join(lines))
    return proc, time.monotonic() - started, lines


def not_ready_logs(data_dir: Path) -> str:
    """The log tails of the instances that were not ready, for the error."""
    state = json.loads((data_dir / "up.json").read_text())
    tails = [
        f"\n--- {s['name']} ({s.get('state')}):\n" + Path(s["log"]).read_text()[-3000:]
        for s in state["services"]
        if s.get("state") != "ready"
    ]
    return "".join(tails)


def stop_up(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(trials: int, idle: float, shapes: list[str]) -> None:
    times: dict[str, list[float]] = {shape: [] for shape in shapes}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            options = SHAPES[shape][0]
            for trial in range(trials):
                data = Path(tmp) / f"up-{shape}-{trial}"
                proc, elapsed, lines = start_up(data, options)
                if not any("all " in line and READY_LINE in line for line in lines):
                    logs = not_ready_logs(data)
                    stop_up(proc)
                    raise RuntimeError(
                        f"chorus up {' '.join(options)}:\n" + "\n".join(lines) + logs
                    )
                times[shape].append(elapsed)
                if shape == "light" and trial == trials - 1:
                    time.sleep(idle)
                    state = json.loads((data / "up.json").read_text())
                    rss = {s["name"]: rss_mb(s["pid"]) for s in state["services"]}
                stop_up(proc)
    figures = [
        Figure(
            "up",
            f"chorus up{''.join(' ' + o for o in SHAPES[shape][0])}: "
            "spawn to every service ready (median)",
            statistics.median(times[shape]),
            "s",
            target=at_most(SHAPES[shape][2]),
            conditions=f"{trials} cold starts, {SHAPES[shape][1]}",
        )
        for shape in shapes
    ]
    figures += [
        Figure(
            "up",
            f"idle RSS {name}",
            mb,
            "MB",
            target=at_most(80.0),
            conditions=f"after {idle:g} s idle",
        )
        for name, mb in rss.items()
    ]
    report(f"chorus up, {trials} trials per shape; RSS after {idle:g} s idle:", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--idle", type=float, default=15.0)
    parser.add_argument(
        "--shapes",
        default=",".join(SHAPES),
        help=f"comma-separated, from {', '.join(SHAPES)} (idle RSS is measured on light)",
    )
    args = parser.parse_args()
    chosen = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in chosen if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    main(args.trials, args.idle, chosen)
