"""The Helm chart, rendered and linted by real Helm, every manifest checked by kubernetes-validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "chorus"
PROFILES = {p.stem.removesuffix("-values"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
K8S_VERSION = "1.33.0"
#: custom resources kubernetes-validate has no schema for; checked structurally below
CRDS = {"ServiceMonitor", "PrometheusRule"}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values or {}, name="chorus", namespace="chorus", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def load_profile(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PROFILES[name].read_text())
    return data


@pytest.mark.parametrize("profile", ["default", *PROFILES])
def test_chart_renders_lints_and_validates(profile: str) -> None:
    values = {} if profile == "default" else load_profile(profile)
    report = helm.lint(str(CHART), values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    docs = render(values)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap"} <= kinds
    for doc in docs:
        if doc["kind"] in CRDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _by(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_service_has_probes_and_runs_its_service() -> None:
    docs = render()
    workloads = {**_by(docs, "Deployment"), **_by(docs, "StatefulSet")}
    expected = {"licensing", "election", "pubsub-gateway", "dht", "coordinator", "backbeat", "hap"}
    assert {name.removeprefix("chorus-") for name in workloads} == expected
    for name, workload in workloads.items():
        container = workload["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [name.removeprefix("chorus-")]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"] for e in container["env"]}
        assert {"CHORUS_NODE_ID", "CHORUS_ADMIN_TOKEN"} <= env
    dht = workloads["chorus-dht"]
    assert dht["kind"] == "StatefulSet" and dht["spec"]["volumeClaimTemplates"]


def test_trial_profile_brings_its_own_nats_cluster_with_fsync_always() -> None:
    docs = render(load_profile("trial"))
    nats = _by(docs, "StatefulSet")["chorus-nats"]
    assert nats["spec"]["replicas"] == 3
    config = _by(docs, "ConfigMap")["chorus-nats-config"]["data"]["nats.conf"]
    assert "sync_interval: always" in config and "routes" in config
    chorus_config = _by(docs, "ConfigMap")["chorus-config"]["data"]
    assert chorus_config["CHORUS_NATS_URL"] == "nats://chorus-nats:4222"
    assert chorus_config["CHORUS_JS_REPLICAS"] == "3"
    assert "chorus-redis" in _by(docs, "Deployment")


def test_ha_profile_scales_and_monitors() -> None:
    docs = render(load_profile("ha"))
    assert set(_by(docs, "HorizontalPodAutoscaler")) == {
        "chorus-pubsub-gateway",
        "chorus-coordinator",
    }
    assert "chorus-coordinator" not in {
        n for n, d in _by(docs, "Deployment").items() if "replicas" in d["spec"]
    }
    assert _by(docs, "PodDisruptionBudget")
    assert _by(docs, "ServiceMonitor") and _by(docs, "PrometheusRule")


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"nats": {"url": "http://wrong"}}, "/nats/url"),
        ({"services": {"election": {"enabled": True, "replicas": "three"}}}, "replicas"),
        ({"services": {"dht": {"enabled": True, "replicas": 3, "engine": "mongo"}}}, "engine"),
        ({"config": {"logLevel": "LOUD"}}, "logLevel"),
        ({"surprise": True}, "surprise"),
        ({"config": {"extraEnv": {"NOT_CHORUS": "x"}}}, "NOT_CHORUS"),
    ],
)
def test_bad_values_are_rejected_by_the_schema(values: dict[str, Any], names: str) -> None:
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as info:
        chart.render(values, name="chorus", namespace="chorus", is_install=True)
    assert names in str(info.value)


# -- NATS users: the chart's own NATS runs the generated authorization, one user per service ------


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env in {container['name']}: {names}"
    return {e["name"]: e for e in container["env"]}


def _service_workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    workloads = {**_by(docs, "Deployment"), **_by(docs, "StatefulSet")}
    return {
        n.removeprefix("chorus-"): w
        for n, w in workloads.items()
        if n not in ("chorus-nats", "chorus-redis")
    }


def test_embedded_nats_gives_every_service_its_own_user() -> None:
    from chorus_common import nats_auth

    docs = render(load_profile("trial"))
    config = _by(docs, "ConfigMap")["chorus-nats-config"]["data"]
    assert "include ./nats-auth.conf" in config["nats.conf"]
    assert config["nats-auth.conf"] == nats_auth.render_authorization()

    secret = _by(docs, "Secret")["chorus-nats-users"]
    assert set(secret["data"]) == {u.name for u in nats_auth.USERS}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    nats = _by(docs, "StatefulSet")["chorus-nats"]["spec"]["template"]["spec"]["containers"][0]
    env = _env(nats)
    for user in nats_auth.USERS:
        ref = env[user.password_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "chorus-nats-users", "key": user.name}

    workloads = _service_workloads(docs)
    assert set(workloads) == set(nats_auth.SERVICE_USERS)
    for name, workload in workloads.items():
        env = _env(workload["spec"]["template"]["spec"]["containers"][0])
        assert env["CHORUS_NATS_USER"]["value"] == name
        ref = env["CHORUS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "chorus-nats-users", "key": name}


def test_rendered_embedded_nats_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    """The ConfigMap as the NATS pod mounts it, checked by the real nats-server (``-t``)."""
    import os
    import subprocess

    from chorus_common import nats_auth
    from chorus_common.natsserver import nats_server_binary

    config = _by(render(load_profile("trial")), "ConfigMap")["chorus-nats-config"]["data"]
    for name, text in config.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, **nats_auth.new_passwords(), "POD_NAME": "chorus-nats-0"}
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_nats_can_use_an_existing_password_secret() -> None:
    docs = render({"nats": {"embedded": {"enabled": True, "auth": {"existingSecret": "mine"}}}})
    assert "chorus-nats-users" not in _by(docs, "Secret")
    for workload in _service_workloads(docs).values():
        env = _env(workload["spec"]["template"]["spec"]["containers"][0])
        assert env["CHORUS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mine"


@pytest.mark.parametrize("profile", ["default", "ha", "existing-nats"])
def test_an_existing_nats_keeps_its_own_credentials(profile: str) -> None:
    values = {} if profile == "default" else load_profile(profile)
    docs = render(values)
    assert "chorus-nats-users" not in _by(docs, "Secret")
    auth_secret = values.get("nats", {}).get("authSecret")
    for workload in _service_workloads(docs).values():
        env = _env(workload["spec"]["template"]["spec"]["containers"][0])
        if auth_secret:
            assert env["CHORUS_NATS_USER"]["valueFrom"]["secretKeyRef"]["name"] == auth_secret
        else:
            assert "CHORUS_NATS_USER" not in env and "CHORUS_NATS_PASSWORD" not in env
