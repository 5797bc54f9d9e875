"""Generate the Grafana dashboards (JSON) with grafana-foundation-sdk; never hand-edit the JSON.

    .venv/bin/python deploy/grafana/generate.py          # write deploy/grafana/*.json + chart copies
    .venv/bin/python deploy/grafana/generate.py --check  # fail if the committed JSON is stale

Every panel's PromQL uses only metrics the services export; an end-to-end test
runs each expression against a real Prometheus scraping `chorus up`.
The datasource is a dashboard variable, so the dashboards work with any
Prometheus datasource name.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent
CHART_COPY = HERE.parent / "helm" / "chorus" / "files" / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    unit: str = "short"
    legend: str = ""
    kind: str = "timeseries"  # or "stat"
    description: str = ""


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    panels: tuple[Panel, ...]


JOB = 'job=~"$job"'

COMMON = (
    Panel(
        "Ready instances",
        f"sum(chorus_health_ready{{{JOB}}})",
        kind="stat",
        description="Instances whose critical checks pass",
    ),
    Panel("Degraded instances", f"sum(chorus_health_degraded{{{JOB}}})", kind="stat"),
    Panel("Bus connected", f"sum(chorus_bus_connected{{{JOB}}})", kind="stat"),
    Panel(
        "HTTP requests / s",
        f"sum by (route) (rate(chorus_system_http_requests_total{{{JOB}}}[5m]))",
        "reqps",
        "{{route}}",
    ),
    Panel(
        "HTTP p99 latency",
        f"histogram_quantile(0.99, sum by (le, route) (rate(chorus_system_http_request_duration_seconds_bucket{{{JOB}}}[5m])))",
        "s",
        "{{route}}",
    ),
    Panel(
        "Errors answered / s",
        f"sum by (code) (rate(chorus_system_errors_total{{{JOB}}}[5m]))",
        "reqps",
        "{{code}}",
    ),
    Panel(
        "Bus publishes / s",
        f"sum by (type) (rate(chorus_bus_published_total{{{JOB}}}[5m]))",
        "ops",
        "{{type}}",
    ),
    Panel(
        "Bus publish p99",
        f"histogram_quantile(0.99, sum by (le) (rate(chorus_bus_publish_latency_seconds_bucket{{{JOB}}}[5m])))",
        "s",
    ),
    Panel(
        "NATS round trip", f"max by (node_id) (chorus_bus_rtt_seconds{{{JOB}}})", "s", "{{node_id}}"
    ),
    Panel(
        "Bus reconnects",
        f"sum by (node_id) (increase(chorus_bus_reconnects_total{{{JOB}}}[1h]))",
        "short",
        "{{node_id}}",
    ),
    Panel(
        "Poison messages / s",
        f"sum by (consumer) (rate(chorus_bus_poison_messages_total{{{JOB}}}[5m]))",
        "ops",
        "{{consumer}}",
    ),
    Panel(
        "Failing checks",
        f"sum by (check) (1 - chorus_health_check_up{{{JOB}}})",
        "short",
        "{{check}}",
    ),
    Panel(
        "Resident memory",
        f"max by (node_id) (process_resident_memory_bytes{{{JOB}}})",
        "bytes",
        "{{node_id}}",
    ),
    Panel(
        "CPU",
        f"sum by (node_id) (rate(process_cpu_seconds_total{{{JOB}}}[5m]))",
        "percentunit",
        "{{node_id}}",
    ),
)

#: service → (dashboard title, extra panels). Extra panels name the service's own metric families.
SERVICES: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "licensing": ("Licensing", ()),
    "election": ("Election", ()),
    "pubsub-gateway": ("Pub/sub gateway", ()),
    "dht": ("DHT", ()),
    "coordinator": ("Coordinator", ()),
    "backbeat": ("BACKBEAT", ()),
    "hap": ("Human Agent Portal", ()),
}


def boards() -> list[Board]:
    overview = Board(
        uid="chorus-overview",
        title="CHORUS / Overview",
        panels=(
            *COMMON[:3],
            Panel(
                "Instances by service",
                "count by (service) (chorus_system_build_info)",
                "short",
                "{{service}}",
            ),
            *COMMON[3:],
        ),
    )
    out = [overview]
    for service, (title, extra) in SERVICES.items():
        out.append(Board(uid=f"chorus-{service}", title=f"CHORUS / {title}", panels=COMMON + extra))
    return out


def build(board: Board, job_regex: str) -> dict[str, object]:
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .tags(["chorus"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Datasource").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Job")
            .datasource(DS)
            .query("label_values(chorus_system_build_info, job)")
            .regex(job_regex)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
    )
    for i, panel in enumerate(board.panels):
        target = prometheus.Dataquery().expr(panel.expr).ref_id("A")
        if panel.legend:
            target = target.legend_format(panel.legend)
        if panel.kind == "stat":
            p = stat.Panel().title(panel.title).datasource(DS).with_target(target).unit(panel.unit)
            p = p.span(8).height(4)
        else:
            p = timeseries.Panel().title(panel.title).datasource(DS).with_target(target)
            p = p.unit(panel.unit).span(12).height(8)
        if panel.description:
            p = p.description(panel.description)
        builder = builder.with_panel(p)
        del i
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def render_all() -> dict[str, str]:
    files: dict[str, str] = {}
    for board in boards():
        service = board.uid.removeprefix("chorus-")
        job_regex = ".*" if service == "overview" else f".*{service}.*"
        files[f"{board.uid}.json"] = (
            json.dumps(build(board, job_regex), indent=2, sort_keys=True) + "\n"
        )
    return files


def expressions() -> list[str]:
    """Every PromQL expression on every dashboard, with the job variable resolved to all."""
    return [p.expr.replace("$job", ".*") for b in boards() for p in b.panels]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed JSON differs")
    args = parser.parse_args()
    files = render_all()
    stale = []
    for directory in (HERE, CHART_COPY):
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = directory / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.write_text(text)
    if stale:
        print("stale dashboards (run deploy/grafana/generate.py):\n  " + "\n  ".join(stale))
        return 1
    print(f"{len(files)} dashboards {'up to date' if args.check else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
