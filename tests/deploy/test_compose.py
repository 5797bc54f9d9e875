"""compose.yaml and the Dockerfile, checked statically (no Docker engine here) against the chart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from chorus_cli.roster import SERVICE_MODULES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
INSTANCES = [
    "licensing",
    "election",
    "pubsub-gateway",
    "dht-1",
    "dht-2",
    "dht-3",
    "coordinator",
    "backbeat",
    "hap",
]


def chart_env() -> set[str]:
    chart = helm.Chart.load(str(ROOT / "deploy" / "helm" / "chorus"))
    docs = []
    # compose brings its own NATS, as the chart does with nats.embedded
    values = {"redis": {"url": "redis://redis:6379/0"}, "nats": {"embedded": {"enabled": True}}}
    for path, text in chart.render(values, name="chorus", namespace="chorus").items():
        if not path.endswith("NOTES.txt"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    names = set(next(d for d in docs if d["metadata"]["name"] == "chorus-config")["data"])
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] != "chorus-nats":
            names |= {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    return names


def test_every_service_is_present_with_healthcheck_and_dependencies() -> None:
    services = COMPOSE["services"]
    assert set(INSTANCES) | {"nats", "redis"} == set(services)
    for name in INSTANCES:
        svc = services[name]
        command = svc["command"][0]
        assert command in SERVICE_MODULES, name
        assert name.startswith(command.split("-")[0]) or command == "dht"
        assert "/health/ready" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["nats"]["condition"] == "service_healthy"
        if name != "licensing":
            # started, not healthy: with no license the others still start and each says why it
            # is not ready (license_unavailable), and CHORUS_LICENSE_REQUIRED=false works unlicensed
            assert svc["depends_on"]["licensing"]["condition"] == "service_started"
        assert svc["environment"]["CHORUS_NODE_ID"] == name
        assert svc["read_only"] is True
    assert services["nats"]["healthcheck"] and services["redis"]["healthcheck"]


def test_compose_environment_matches_the_chart() -> None:
    names = chart_env()
    for instance in INSTANCES:
        compose_env = set(COMPOSE["services"][instance]["environment"])
        assert compose_env <= names, (instance, compose_env - names)


def test_compose_nats_is_durable() -> None:
    conf = (ROOT / "deploy" / "compose" / "nats.conf").read_text()
    assert re.search(r"sync_interval:\s*always", conf)
    assert "jetstream" in conf
    mounted = COMPOSE["services"]["nats"]["volumes"][0]
    assert mounted.startswith("./deploy/compose/nats.conf:")


def test_dockerfile_is_non_root_with_healthcheck_and_chorus_serve() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and "/health/ready" in text
    assert 'ENTRYPOINT ["chorus", "serve"]' in text
    assert text.count("FROM ") >= 2  # multi-stage
    assert "uv sync --frozen" in text


def _service_of(instance: str) -> str:
    return "dht" if instance.startswith("dht-") else instance


def test_compose_services_connect_as_their_own_nats_users() -> None:
    from chorus_cli import nats_users

    services = COMPOSE["services"]
    nats_env = services["nats"]["environment"]
    assert set(nats_env) == {u.password_env for u in nats_users.USERS}
    for variable, value in nats_env.items():
        assert value.startswith(f"${{{variable}:?"), variable  # required, never a default
    assert (
        "./deploy/compose/nats-auth.conf:/etc/nats/nats-auth.conf:ro" in services["nats"]["volumes"]
    )
    conf = (ROOT / "deploy" / "compose" / "nats.conf").read_text()
    assert re.search(r"^include \./nats-auth\.conf$", conf, re.M)
    for name in INSTANCES:
        user = nats_users.SERVICE_USERS[_service_of(name)]
        env = services[name]["environment"]
        assert env["CHORUS_NATS_USER"] == user.name, name
        assert env["CHORUS_NATS_PASSWORD"].startswith(f"${{{user.password_env}:?"), name


def test_compose_nats_config_is_accepted_by_nats_server_only_with_passwords(
    tmp_path: Path,
) -> None:
    """nats.conf and nats-auth.conf as mounted in the container, checked by nats-server ``-t``."""
    import os
    import subprocess

    from chorus_cli import nats_users
    from chorus_common import nats_auth
    from chorus_common.natsserver import nats_server_binary

    for name in ("nats.conf", "nats-auth.conf"):
        (tmp_path / name).write_text((ROOT / "deploy" / "compose" / name).read_text())

    def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )

    bare = {k: v for k, v in os.environ.items() if not k.startswith("CHORUS_NATS_PASSWORD_")}
    ok = check({**bare, **nats_auth.new_passwords(nats_users.USERS)})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = check(bare)  # no password set: the server does not start open
    assert refused.returncode != 0 and "CHORUS_NATS_PASSWORD_" in refused.stdout + refused.stderr


# -- the license: mounted into licensing from CHORUS_LICENSE_DIR, required by every other service --

_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (unset or empty: the default)."""

    def one(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise ValueError(f"{name}: {arg}")
        return arg if kind == "-" else ""

    return _VARIABLE.sub(one, value)


def _license_mount() -> tuple[str, str, str]:
    """(host source, container path, mode) of the licensing service's license mount."""
    mounts = [
        tuple(v.rsplit(":", 2))
        for v in COMPOSE["services"]["licensing"]["volumes"]
        if isinstance(v, str) and "CHORUS_LICENSE_DIR" in v
    ]
    assert len(mounts) == 1, COMPOSE["services"]["licensing"]["volumes"]
    source, target, mode = mounts[0]
    return source, target, mode


def test_every_service_but_licensing_requires_a_license_unless_opted_out() -> None:
    services = COMPOSE["services"]
    assert "CHORUS_LICENSE_REQUIRED" not in services["licensing"]["environment"]
    for name in INSTANCES:
        if name == "licensing":
            continue
        value = services[name]["environment"]["CHORUS_LICENSE_REQUIRED"]
        assert interpolate(value, {}) == "true", name  # the default: fail closed
        assert interpolate(value, {"CHORUS_LICENSE_REQUIRED": "false"}) == "false", name


def test_licensing_mounts_the_license_dir_read_only_with_the_env_pointing_into_it() -> None:
    source, target, mode = _license_mount()
    assert mode == "ro"
    assert interpolate(source, {}) == "./license"
    assert interpolate(source, {"CHORUS_LICENSE_DIR": "/srv/lic"}) == "/srv/lic"
    env = COMPOSE["services"]["licensing"]["environment"]
    assert env["CHORUS_LICENSE_FILE"] == f"{target}/license.json"
    assert env["CHORUS_LICENSE_ISSUER_KEY"] == f"{target}/issuer.pub"
    assert not any(  # no other service sees the license directory
        target in str(v)
        for name in INSTANCES
        if name != "licensing"
        for v in COMPOSE["services"][name].get("volumes", [])
    )


def test_the_license_made_as_the_header_says_is_accepted_by_compose_licensing(
    tmp_path: Path,
) -> None:
    """The `chorus-license dev` line atop compose.yaml, run for real, then verified as the
    licensing container would: its CHORUS_CLUSTER, the files under the mounted directory."""
    import shlex

    from chorus_licensing.cli import main
    from chorus_licensing.license import load_license_file, verify_license

    header = (ROOT / "compose.yaml").read_text().split("\nname:", 1)[0]
    line = next(x for x in header.splitlines() if "chorus-license dev" in x)
    argv = shlex.split(line.lstrip("# "))
    assert argv[0].endswith("chorus-license") and argv[1] == "dev"
    out = argv.index("--out") + 1
    source, target, _ = _license_mount()
    assert argv[out] == interpolate(source, {})  # it writes where compose mounts from
    argv[out] = str(tmp_path)
    assert main(argv[1:]) == 0

    env = COMPOSE["services"]["licensing"]["environment"]
    cluster = interpolate(env["CHORUS_CLUSTER"], {})
    in_container = {
        f"{target}/{p.name}": p for p in tmp_path.iterdir()
    }  # the host directory as the container sees it
    license_file = in_container[env["CHORUS_LICENSE_FILE"]]
    issuer_pub = in_container[env["CHORUS_LICENSE_ISSUER_KEY"]].read_text().strip()
    lic = verify_license(load_license_file(license_file.read_text()), issuer_pub, cluster)
    assert lic.cluster_id == cluster
