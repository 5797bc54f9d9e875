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


def render_notes(values: dict[str, Any] | None = None) -> str:
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values or {}, name="chorus", namespace="chorus", is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


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
        env = {e["name"]: e for e in container["env"]}
        assert {"CHORUS_NODE_ID", "CHORUS_ADMIN_TOKEN", "CHORUS_READ_TOKENS"} <= set(env)
        # reads are closed unless the values open them
        assert env["CHORUS_PUBLIC_READ"]["value"] == "false"
        read = env["CHORUS_READ_TOKENS"]["valueFrom"]["secretKeyRef"]
        assert read["name"] == "chorus-admin" and read["key"] == "read-token"
    dht = workloads["chorus-dht"]
    tokens = _by(docs, "Secret")["chorus-admin"]["data"]
    assert tokens["admin-token"] and tokens["read-token"] != tokens["admin-token"]
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
        ({"licensing": {"required": "yes"}}, "required"),
        ({"licensing": {"secret": "mine"}}, "secret"),
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
    from chorus_cli import nats_users

    docs = render(load_profile("trial"))
    config = _by(docs, "ConfigMap")["chorus-nats-config"]["data"]
    assert "include ./nats-auth.conf" in config["nats.conf"]
    assert config["nats-auth.conf"] == nats_users.render_authorization()

    secret = _by(docs, "Secret")["chorus-nats-users"]
    assert set(secret["data"]) == {u.name for u in nats_users.USERS}
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    nats = _by(docs, "StatefulSet")["chorus-nats"]["spec"]["template"]["spec"]["containers"][0]
    env = _env(nats)
    for user in nats_users.USERS:
        ref = env[user.password_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "chorus-nats-users", "key": user.name}

    workloads = _service_workloads(docs)
    assert set(workloads) == set(nats_users.SERVICE_USERS)
    for name, workload in workloads.items():
        env = _env(workload["spec"]["template"]["spec"]["containers"][0])
        assert env["CHORUS_NATS_USER"]["value"] == name
        ref = env["CHORUS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "chorus-nats-users", "key": name}


def test_rendered_embedded_nats_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    """The ConfigMap as the NATS pod mounts it, checked by the real nats-server (``-t``)."""
    import os
    import subprocess

    from chorus_cli import nats_users
    from chorus_common import nats_auth
    from chorus_common.natsserver import nats_server_binary

    config = _by(render(load_profile("trial")), "ConfigMap")["chorus-nats-config"]["data"]
    for name, text in config.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, **nats_auth.new_passwords(nats_users.USERS), "POD_NAME": "chorus-nats-0"}
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


# -- the license: licensing gets it from a Secret mounted as a directory; every other service
#    holds a seat (CHORUS_LICENSE_REQUIRED) unless licensing.required=false --------------------

LICENSE_DIR = "/etc/chorus/license"
SEAT_HOLDERS = {"election", "pubsub-gateway", "dht", "coordinator", "backbeat", "hap"}


def _containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: w["spec"]["template"]["spec"]["containers"][0]
        for name, w in _service_workloads(docs).items()
    }


def _license_required(docs: list[dict[str, Any]]) -> dict[str, str | None]:
    required: dict[str, str | None] = {}
    for name, container in _containers(docs).items():
        entry = _env(container).get("CHORUS_LICENSE_REQUIRED")
        required[name] = None if entry is None else entry["value"]
    return required


def _license_volume(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The licensing pod's license volume and its mount."""
    pod = _by(docs, "Deployment")["chorus-licensing"]["spec"]["template"]["spec"]
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == LICENSE_DIR]
    assert len(mounts) == 1, pod["containers"][0]["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    return volume, mounts[0]


@pytest.mark.parametrize("profile", ["default", *PROFILES])
def test_every_service_but_licensing_holds_a_seat_by_default(profile: str) -> None:
    docs = render({} if profile == "default" else load_profile(profile))
    required = _license_required(docs)
    assert set(required) == SEAT_HOLDERS | {"licensing"}
    assert required.pop("licensing") is None  # it grants the seats
    assert required == dict.fromkeys(SEAT_HOLDERS, "true")
    # not hidden in the shared ConfigMap either, where a container env would override it
    assert "CHORUS_LICENSE_REQUIRED" not in _by(docs, "ConfigMap")["chorus-config"]["data"]


@pytest.mark.parametrize("profile", ["default", "trial"])
def test_licensing_off_is_false_on_every_service(profile: str) -> None:
    values = {} if profile == "default" else load_profile(profile)
    docs = render({**values, "licensing": {"required": False}})
    required = _license_required(docs)
    assert required.pop("licensing") is None
    assert required == dict.fromkeys(SEAT_HOLDERS, "false")


def test_a_service_env_can_set_its_own_license_required_without_a_duplicate() -> None:
    docs = render(
        {
            "services": {
                "election": {
                    "enabled": True,
                    "replicas": 3,
                    "env": {"CHORUS_LICENSE_REQUIRED": "false"},
                }
            }
        }
    )
    required = _license_required(docs)  # _env fails on a duplicate name
    assert required["election"] == "false"
    assert {required[n] for n in SEAT_HOLDERS - {"election"}} == {"true"}


def test_license_required_in_extra_env_is_refused_for_licensing_required() -> None:
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as info:
        chart.render(
            {"config": {"extraEnv": {"CHORUS_LICENSE_REQUIRED": "false"}}},
            name="chorus",
            namespace="chorus",
            is_install=True,
        )
    assert "licensing.required" in str(info.value)


def test_licensing_pod_mounts_the_license_secret_as_a_directory() -> None:
    docs = render()
    volume, mount = _license_volume(docs)
    # no subPath: Kubernetes updates a Secret volume in place only when mounted as a directory
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert mount["readOnly"] is True
    # none configured yet: the pod starts anyway and says the license is missing
    assert volume["secret"] == {"secretName": "chorus-license", "optional": True}
    env = _env(_containers(docs)["licensing"])
    assert env["CHORUS_LICENSE_FILE"]["value"] == f"{LICENSE_DIR}/license.json"
    assert env["CHORUS_LICENSE_ISSUER_KEY"]["value"] == f"{LICENSE_DIR}/issuer.pub"
    assert "chorus-license" not in _by(docs, "Secret")  # the chart renders none without a license
    for name, container in _containers(docs).items():
        if name != "licensing":
            assert LICENSE_DIR not in {m["mountPath"] for m in container["volumeMounts"]}
            assert "CHORUS_LICENSE_FILE" not in _env(container)


def test_existing_license_secret_flows_into_the_licensing_pod() -> None:
    values = {"licensing": {"existingSecret": "acme-license"}}
    docs = render(values)
    volume, mount = _license_volume(docs)
    assert volume["secret"] == {"secretName": "acme-license"}  # named: it must exist
    assert "subPath" not in mount
    assert "chorus-license" not in _by(docs, "Secret")
    assert _license_required(docs)["hap"] == "true"
    # the existing-nats profile names one too, and lints and validates (above)
    assert _license_volume(render(load_profile("existing-nats")))[0]["secret"] == {
        "secretName": "chorus-license"
    }


def test_inline_license_from_chorus_license_dev_becomes_the_mounted_secret(
    tmp_path: Path,
) -> None:
    """`chorus-license dev`, then --set-file licensing.license / licensing.issuerPub."""
    import base64

    from chorus_licensing.cli import main
    from chorus_licensing.license import load_license_file, verify_license

    assert main(["dev", "--out", str(tmp_path), "--cluster", "chorus"]) == 0
    values = {
        "licensing": {
            "license": (tmp_path / "license.json").read_text(),
            "issuerPub": (tmp_path / "issuer.pub").read_text(),
        }
    }
    report = helm.lint(str(CHART), values, strict=True)
    assert report["errors"] == []
    docs = render(values)
    for doc in docs:
        if doc["kind"] not in CRDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    secret = _by(docs, "Secret")["chorus-license"]
    files = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(files) == {"license.json", "issuer.pub"}  # never the private issuer.key
    cluster = _by(docs, "ConfigMap")["chorus-config"]["data"]["CHORUS_CLUSTER"]
    lic = verify_license(
        load_license_file(files["license.json"]), files["issuer.pub"].strip(), cluster
    )
    assert lic.seats == 32
    volume, _ = _license_volume(docs)
    assert volume["secret"] == {"secretName": "chorus-license"}


def test_half_an_inline_license_is_refused() -> None:
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as info:
        chart.render(
            {"licensing": {"license": "{}"}}, name="chorus", namespace="chorus", is_install=True
        )
    assert "licensing.issuerPub" in str(info.value)


def test_notes_without_a_license_say_every_service_is_not_ready_and_how_to_fix_it() -> None:
    notes = render_notes()
    assert "license_unavailable" in notes and "not ready" in notes
    assert "chorus-license dev --out ./license --cluster chorus\n" in notes
    assert (
        "kubectl -n chorus create secret generic chorus-license "
        "--from-file=./license/license.json --from-file=./license/issuer.pub\n"
    ) in notes
    assert "--set licensing.existingSecret=chorus-license\n" in notes
    assert "licensing is OFF" not in notes
    # the cluster in the command is the one the services run as
    other = render_notes({"config": {"cluster": "prod-eu"}})
    assert "chorus-license dev --out ./license --cluster prod-eu\n" in other


def test_notes_warn_when_licensing_is_off() -> None:
    notes = render_notes({"licensing": {"required": False}})
    assert "licensing is OFF" in notes and "fail-open" in notes
    assert "license_unavailable" not in notes and "chorus-license dev" not in notes


def test_notes_with_a_license_name_its_secret() -> None:
    notes = render_notes({"licensing": {"existingSecret": "acme-license"}})
    assert 'Secret "acme-license"' in notes and LICENSE_DIR in notes
    assert "license_unavailable" not in notes and "licensing is OFF" not in notes
