"""The figures a benchmark reports, printed for a person and collected for bench/RESULTS.md.

Every ``bench_*.py`` script ends with ``report(...)``: it prints each figure
beside its baseline, and when ``CHORUS_BENCH_OUT`` names a file (``make bench``
sets it) appends the same figures there as JSON lines, so the report writer
never parses printed text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

OUT_ENV = "CHORUS_BENCH_OUT"


@dataclass(frozen=True)
class Target:
    """A bound on a figure's value or on its ratio to the baseline."""

    op: str  # ">=" or "<="
    bound: float
    on: str = "ratio"  # "ratio" or "value"

    def met(self, value: float, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None:
            return None
        return subject >= self.bound if self.op == ">=" else subject <= self.bound

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.bound:g}"


def at_least(bound: float, on: str = "ratio") -> Target:
    return Target(">=", bound, on)


def at_most(bound: float, on: str = "value") -> Target:
    return Target("<=", bound, on)


@dataclass(frozen=True)
class Figure:
    """One measured number; the baseline is what it was measured beside in the same run."""

    bench: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: Target | None = None
    conditions: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        assert self.baseline_value is not None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value, self.ratio)

    def line(self) -> str:
        text = f"  {self.name}: {fmt(self.value)} {self.unit}"
        if self.baseline_value is not None:
            text += f"  beside {self.baseline} {fmt(self.baseline_value)} {self.unit}"
        if self.ratio is not None:
            text += f"  ratio {self.ratio:.2f}"
        if self.target is not None:
            text += f"  (target {self.target}: {'met' if self.met else 'MISSED'})"
        return text

    def to_json(self) -> str:
        data = asdict(self)
        data["target"] = None if self.target is None else asdict(self.target)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Figure:
        data = json.loads(text)
        target = data.pop("target")
        return cls(**data, target=None if target is None else Target(**target))


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(title: str, figures: Iterable[Figure]) -> list[Figure]:
    """Print the figures under a title and append them to $CHORUS_BENCH_OUT when set."""
    figures = list(figures)
    print(title)
    for figure in figures:
        print(figure.line())
    out = os.environ.get(OUT_ENV)
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            for figure in figures:
                handle.write(figure.to_json() + "\n")
    return figures
