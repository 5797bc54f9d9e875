"""`make bench` keeps working: run_all runs real bench scripts and writes the report they measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_all_quick_writes_results_with_baselines_and_targets(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run_all.py"),
            "--quick",
            "--only",
            "envelopes,up",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert "## Machine" in report and "nats-server: v2." in report
    # the envelope figure beside both baselines, with ratio and target
    rows = [line for line in report.splitlines() if line.startswith("| Bus publish_many")]
    assert any("(raw nats-py)" in r and "ratio >= 0.9" in r for r in rows)
    assert any("(FastStream)" in r and "ratio >= 5" in r for r in rows)
    # chorus up: time to ready and an idle RSS figure for every service process
    assert "chorus up: spawn to every service ready" in report
    for instance in ("licensing", "election", "pubsub-gateway", "dht-1", "coordinator", "hap"):
        assert f"| idle RSS {instance} |" in report
    assert "**The script failed**" not in report


def test_unknown_bench_name_is_refused_with_the_choices() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown bench nope; choose from envelopes" in proc.stderr


def test_soak_report_calls_growth_growing_a_filled_cache_levelled_and_noise_flat(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import soak
    finally:
        sys.path.remove(str(ROOT / "bench"))
    minutes = 10.0
    times = [i * 30.0 for i in range(21)]
    samples = {
        "steady": [(t, 60.0 + (0.3 if i % 2 else 0.0)) for i, t in enumerate(times)],
        "leaky": [(t, 60.0 + t / 20) for t in times],  # +30 MB over ten minutes
        # a bounded cache: +8 MB over the first half, then nothing
        "cache": [(t, 60.0 + min(t, 300.0) / 37.5) for t in times],
        "nats-server": [(t, 20.0 + t / 10) for t in times],
    }
    out = tmp_path / "SOAK.md"
    assert soak.write_report(out, minutes, samples, "load", []) is False
    report = out.read_text()
    steady = next(line for line in report.splitlines() if line.startswith("| steady |"))
    leaky = next(line for line in report.splitlines() if line.startswith("| leaky |"))
    cache = next(line for line in report.splitlines() if line.startswith("| cache |"))
    broker = [line for line in report.splitlines() if line.startswith("| nats-server |")][-1]
    assert steady.endswith("| flat |") and leaky.endswith("| **growing** |")
    assert cache.endswith("| levelled off |")
    assert broker.endswith("| **growing** (broker: not judged) |")
    assert "+180.0" in leaky  # MB per hour, least squares
    judged = {k: samples[k] for k in ("steady", "cache", "nats-server")}
    assert soak.write_report(out, minutes, judged, "load", []) is True
