"""`chorus up` time to ready, and each service's resident memory once the constellation idles.

Runs the real command a user runs (`chorus up --data-dir <tmp>`) several times,
timing from the spawn of the CLI to its "all N services ready" line; after the
last start it lets the constellation idle, then reads VmRSS of every service
process from /proc (the pids `chorus up` records in up.json) and stops it with
Ctrl-C as a user would.

    .venv/bin/python bench/bench_up.py [--trials 3] [--idle 15]
"""

from __future__ import annotations

import argparse
import json
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


def rss_mb(pid: int) -> float:
    """Resident set size of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_up(data_dir: Path) -> tuple[subprocess.Popen[str], float, list[str]]:
    """Spawn `chorus up`; return it, seconds until its ready line, and its output so far."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [CHORUS, "up", "--data-dir", str(data_dir)],
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


def stop_up(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(trials: int, idle: float) -> None:
    times: list[float] = []
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(trials):
            data = Path(tmp) / f"up-{trial}"
            proc, elapsed, _ = start_up(data)
            times.append(elapsed)
            if trial == trials - 1:
                time.sleep(idle)
                state = json.loads((data / "up.json").read_text())
                rss = {s["name"]: rss_mb(s["pid"]) for s in state["services"]}
            stop_up(proc)
    figures = [
        Figure(
            "up",
            "chorus up: spawn to every service ready (median)",
            statistics.median(times),
            "s",
            target=at_most(10.0),
            conditions=f"{trials} cold starts, embedded NATS, 9 service processes forked by the CLI",
        )
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
    report(f"chorus up, {trials} trials; RSS after {idle:g} s idle:", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--idle", type=float, default=15.0)
    args = parser.parse_args()
    main(args.trials, args.idle)
