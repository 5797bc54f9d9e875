"""Observability end to end: a real Prometheus scrapes the `chorus up` constellation.

Every metric family in docs/metrics.md must reach Prometheus, and every PromQL
expression of every dashboard and alert rule must evaluate without error.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chorus_cli.constellation import Constellation
from chorus_common.natsserver import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"chorus_tooling_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


DASHBOARDS = _load(ROOT / "deploy" / "grafana" / "generate.py")
METRICS_DOC = _load(ROOT / "docs" / "generate_metrics.py")


def test_promtool_accepts_rules_and_scrape_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make setup` installs Debian's prometheus"
    rules = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "deploy/prometheus/rules.yaml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool, "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_chart_ships_the_same_rules_and_dashboards() -> None:
    assert (ROOT / "deploy/prometheus/rules.yaml").read_text() == (
        ROOT / "deploy/helm/chorus/files/prometheus-rules.yaml"
    ).read_text()
    for name, text in DASHBOARDS.render_all().items():
        assert (ROOT / "deploy/grafana" / name).read_text() == text, f"{name} is stale"
        assert (ROOT / "deploy/helm/chorus/files/dashboards" / name).read_text() == text


def test_metrics_doc_is_generated_from_the_code(tmp_path: Path) -> None:
    text = METRICS_DOC.render(METRICS_DOC.collect(tmp_path))
    assert (ROOT / "docs/metrics.md").read_text() == text, "run docs/generate_metrics.py"


@pytest.fixture(scope="module")
def constellation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Constellation]:
    data = tmp_path_factory.mktemp("up")
    c = Constellation(data_dir=data)
    try:
        c.start_nats()
        procs = c.start_services()
        deadline = time.monotonic() + 60
        for p in procs:
            while not p.is_ready():
                assert p.running, p.log_tail()
                assert time.monotonic() < deadline, f"{p.instance} not ready:\n{p.log_tail()}"
                time.sleep(0.1)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def prometheus(
    constellation: Constellation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `make setup` installs Debian's prometheus"
    work = tmp_path_factory.mktemp("prometheus")
    rules = work / "rules.yaml"
    rules.write_text((ROOT / "deploy/prometheus/rules.yaml").read_text())
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": f"chorus-{p.instance}",
                "static_configs": [{"targets": [f"127.0.0.1:{p.port}"]}],
            }
            for p in constellation.processes
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (work / "log").open("wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, 30, proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if len(targets) == len(constellation.processes) and all(
                t["health"] == "up" for t in targets
            ):
                break
            assert time.monotonic() < deadline, targets
            time.sleep(0.2)
        time.sleep(2.5)  # a few scrapes, so rate() windows have two points
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_documented_metric_reaches_prometheus(prometheus: str) -> None:
    documented = METRICS_DOC.documented_names((ROOT / "docs/metrics.md").read_text())
    assert documented
    metadata = httpx.get(f"{prometheus}/api/v1/metadata", timeout=10).json()["data"]
    names = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    known = set(metadata) | {n.removesuffix("_bucket") for n in names} | names
    missing = [
        name
        for name in documented
        if name not in known
        and name.removesuffix("_total") not in known
        and name.removesuffix("_info") not in known
    ]
    assert missing == [], f"documented but not scraped: {missing}"


def _query(prometheus: str, expr: str) -> dict[str, Any]:
    resp = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body


def test_every_dashboard_expression_evaluates(prometheus: str) -> None:
    for expr in DASHBOARDS.expressions():
        _query(prometheus, expr)
    ready = _query(prometheus, 'sum(chorus_health_ready{job=~".*"})')["data"]["result"]
    assert float(ready[0]["value"][1]) == 9.0


def test_every_alert_rule_evaluates(prometheus: str) -> None:
    groups = yaml.safe_load((ROOT / "deploy/prometheus/rules.yaml").read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    assert len(exprs) >= 7
    for expr in exprs:
        _query(prometheus, expr)
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert all(rule["health"] != "err" for g in rules for rule in g["rules"]), rules
