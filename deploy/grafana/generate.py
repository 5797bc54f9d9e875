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
    "licensing": (
        "Licensing",
        (
            Panel("License valid", f"max(chorus_licensing_license_valid{{{JOB}}})", kind="stat"),
            Panel(
                "Seats used / total",
                f"max(chorus_licensing_seats_used{{{JOB}}}) / max(chorus_licensing_seats_total{{{JOB}}})",
                "percentunit",
                kind="stat",
            ),
            Panel(
                "Grace remaining",
                f"min(chorus_licensing_grace_remaining_seconds{{{JOB}}})",
                "s",
                kind="stat",
            ),
            Panel(
                "Breaker state (0 closed, 1 half-open, 2 open)",
                f"max(chorus_licensing_breaker_state{{{JOB}}})",
            ),
            Panel(
                "Validations / s",
                f"sum by (result) (rate(chorus_licensing_validations_total{{{JOB}}}[5m]))",
                "ops",
                "{{result}}",
            ),
            Panel(
                "Lease events / s",
                f"sum by (event) (rate(chorus_licensing_lease_events_total{{{JOB}}}[5m]))",
                "ops",
                "{{event}}",
            ),
        ),
    ),
    "election": (
        "Election",
        (
            Panel(
                "Admins",
                f"sum(chorus_election_is_admin{{{JOB}}})",
                kind="stat",
                description="Exactly one when healthy",
            ),
            Panel("Current term", f"max(chorus_election_term{{{JOB}}})", kind="stat"),
            Panel("Live candidates", f"max(chorus_election_live_candidates{{{JOB}}})", kind="stat"),
            Panel(
                "Elections by trigger",
                f"sum by (trigger) (increase(chorus_election_elections_total{{{JOB}}}[1h]))",
                "short",
                "{{trigger}}",
            ),
            Panel(
                "Election duration p99",
                f"histogram_quantile(0.99, sum by (le) (rate(chorus_election_duration_seconds_bucket{{{JOB}}}[15m])))",
                "s",
            ),
            Panel(
                "Heartbeat lag",
                f"max by (node_id) (chorus_election_heartbeat_lag_seconds{{{JOB}}})",
                "s",
                "{{node_id}}",
            ),
            Panel(
                "Score components",
                f"avg by (component) (chorus_election_score{{{JOB}}})",
                "short",
                "{{component}}",
            ),
            Panel(
                "Step-downs and split brains",
                f"sum(increase(chorus_election_stepdowns_total{{{JOB}}}[1h])) + "
                f"sum(increase(chorus_election_split_brain_detections_total{{{JOB}}}[1h]))",
            ),
        ),
    ),
    "pubsub-gateway": (
        "Pub/sub gateway",
        (
            Panel(
                "Published / s",
                f"sum by (type) (rate(chorus_pubsub_published_total{{{JOB}}}[5m]))",
                "ops",
                "{{type}}",
            ),
            Panel(
                "Rejected / s",
                f"sum by (reason) (rate(chorus_pubsub_rejected_total{{{JOB}}}[5m]))",
                "ops",
                "{{reason}}",
            ),
            Panel(
                "Publish p99",
                f"histogram_quantile(0.99, sum by (le) (rate(chorus_pubsub_publish_latency_seconds_bucket{{{JOB}}}[5m])))",
                "s",
            ),
            Panel(
                "Subscribers",
                f"sum by (transport) (chorus_pubsub_active_subscribers{{{JOB}}})",
                "short",
                "{{transport}}",
            ),
            Panel(
                "Dropped slow subscribers",
                f"sum by (transport) (increase(chorus_pubsub_slow_consumers_total{{{JOB}}}[1h]))",
                "short",
                "{{transport}}",
            ),
            Panel(
                "Rate limited / s",
                f"sum(rate(chorus_pubsub_rate_limited_total{{{JOB}}}[5m]))",
                "ops",
            ),
            Panel(
                "Secrets redacted / s",
                f"sum by (pattern) (rate(chorus_shhh_redactions_total{{{JOB}}}[5m]))",
                "ops",
                "{{pattern}}",
            ),
        ),
    ),
    "dht": (
        "DHT",
        (
            Panel(
                "Stored records",
                f"sum by (node_id) (chorus_dht_stored_records{{{JOB}}})",
                "short",
                "{{node_id}}",
            ),
            Panel(
                "Stored bytes",
                f"sum by (node_id) (chorus_dht_stored_bytes{{{JOB}}})",
                "bytes",
                "{{node_id}}",
            ),
            Panel(
                "Under-replicated records",
                f"sum(chorus_dht_under_replicated_records{{{JOB}}})",
                kind="stat",
            ),
            Panel(
                "Routing table size",
                f"max by (node_id) (chorus_dht_routing_table_size{{{JOB}}})",
                "short",
                "{{node_id}}",
            ),
            Panel(
                "RPCs / s",
                f"sum by (kind, result) (rate(chorus_dht_rpcs_total{{{JOB}}}[5m]))",
                "ops",
                "{{kind}} {{result}}",
            ),
            Panel(
                "Operation p99",
                f"histogram_quantile(0.99, sum by (le, operation) (rate(chorus_dht_operation_duration_seconds_bucket{{{JOB}}}[5m])))",
                "s",
                "{{operation}}",
            ),
            Panel(
                "Repairs / s",
                f"sum(rate(chorus_dht_replication_repairs_total{{{JOB}}}[5m]))",
                "ops",
            ),
            Panel(
                "Repair errors / s",
                f"sum by (stage) (rate(chorus_dht_repair_errors_total{{{JOB}}}[5m]))",
                "ops",
                "{{stage}}",
            ),
            Panel(
                "Quarantined rows awaiting a good copy",
                f"sum by (node_id) (chorus_dht_quarantine_pending_records{{{JOB}}})",
                "short",
                "{{node_id}}",
            ),
            Panel(
                "Rows quarantined / s",
                f"sum by (node_id) (rate(chorus_dht_quarantined_records_total{{{JOB}}}[5m]))",
                "ops",
                "{{node_id}}",
            ),
            Panel(
                "Quorum refusals (503) / s",
                f"sum by (operation) (rate(chorus_dht_quorum_failures_total{{{JOB}}}[5m]))",
                "ops",
                "{{operation}}",
            ),
            Panel(
                "Cache hit ratio",
                f"sum(rate(chorus_dht_cache_hits_total{{{JOB}}}[5m])) / clamp_min("
                f"sum(rate(chorus_dht_cache_hits_total{{{JOB}}}[5m])) + "
                f"sum(rate(chorus_dht_cache_misses_total{{{JOB}}}[5m])), 1e-9)",
                "percentunit",
            ),
        ),
    ),
    "coordinator": (
        "Coordinator",
        (
            Panel(
                "Tasks by status",
                f"max by (status) (chorus_tasks_by_status{{{JOB}}})",
                "short",
                "{{status}}",
            ),
            Panel("Assigned / s", f"sum(rate(chorus_tasks_assigned_total{{{JOB}}}[5m]))", "ops"),
            Panel(
                "Claim conflicts / s",
                f"sum(rate(chorus_tasks_claim_conflicts_total{{{JOB}}}[5m]))",
                "ops",
            ),
            Panel(
                "Assignment latency p99",
                f"histogram_quantile(0.99, sum by (le) (rate(chorus_tasks_assignment_latency_seconds_bucket{{{JOB}}}[15m])))",
                "s",
            ),
            Panel(
                "Lease expiries", f"sum(increase(chorus_tasks_lease_expiries_total{{{JOB}}}[1h]))"
            ),
            Panel(
                "Sessions by outcome",
                f"sum by (outcome) (increase(chorus_coordination_sessions_total{{{JOB}}}[1h]))",
                "short",
                "{{outcome}}",
            ),
            Panel(
                "Rule matches",
                f"sum by (rule) (increase(chorus_coordination_rule_matches_total{{{JOB}}}[1h]))",
                "short",
                "{{rule}}",
            ),
            Panel(
                "Assigning replicas", f"sum(chorus_coordination_is_leader{{{JOB}}})", kind="stat"
            ),
        ),
    ),
    "backbeat": (
        "BACKBEAT",
        (
            Panel("Beat index", f"max(chorus_backbeat_beat_index{{{JOB}}})", kind="stat"),
            Panel("Tempo (BPM)", f"max(chorus_backbeat_tempo_bpm{{{JOB}}})", kind="stat"),
            Panel("Pulse replicas", f"sum(chorus_backbeat_is_pulse{{{JOB}}})", kind="stat"),
            Panel(
                "Operations by phase",
                f"sum by (phase) (rate(chorus_backbeat_operations_total{{{JOB}}}[5m]))",
                "ops",
                "{{phase}}",
            ),
            Panel(
                "Overruns",
                f"sum by (kind) (increase(chorus_backbeat_overruns_total{{{JOB}}}[1h]))",
                "short",
                "{{kind}}",
            ),
            Panel("Drift", f"max(chorus_backbeat_drift_seconds{{{JOB}}})", "s"),
            Panel("Silent agents", f"max(chorus_backbeat_silent_agents{{{JOB}}})"),
        ),
    ),
    "hap": (
        "Human Agent Portal",
        (
            Panel(
                "Messages sent / s",
                f"sum by (type) (rate(chorus_hap_messages_sent_total{{{JOB}}}[5m]))",
                "ops",
                "{{type}}",
            ),
            Panel(
                "Sign-ins",
                f"sum by (result) (increase(chorus_hap_logins_total{{{JOB}}}[1h]))",
                "short",
                "{{result}}",
            ),
            Panel(
                "Votes",
                f"sum by (choice) (increase(chorus_hap_votes_total{{{JOB}}}[1h]))",
                "short",
                "{{choice}}",
            ),
            Panel("Live viewers", f"sum(chorus_hap_live_viewers{{{JOB}}})", kind="stat"),
            Panel("Open decisions", f"max(chorus_hap_open_decisions{{{JOB}}})", kind="stat"),
        ),
    ),
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
