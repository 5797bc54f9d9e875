"""The Helm chart gives every HAP replica one session key from a Secret (real Helm renders it)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "chorus"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = helm.Chart.load(str(CHART)).render(
        values, name="chorus", namespace="chorus", is_install=True
    )
    return [
        d
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]


def hap_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (hap,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "chorus-hap"
    ]
    return {e["name"]: e for e in hap["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_hap_replicas_share_a_generated_kept_session_key() -> None:
    docs = render({"services": {"hap": {"replicas": 3}}})
    ref = hap_env(docs)["CHORUS_HAP_SESSION_KEY"]["valueFrom"]["secretKeyRef"]
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]]
    key = base64.b64decode(secret["data"][ref["key"]]).decode()
    assert len(key) >= 32  # what chorus_hap.sessions.load_session_key requires
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_an_own_secret_replaces_the_generated_one() -> None:
    docs = render({"services": {"hap": {"sessionKeySecret": "mine"}}})
    assert hap_env(docs)["CHORUS_HAP_SESSION_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "mine",
        "key": "session-key",
    }
    assert not [d for d in docs if d["metadata"]["name"] == "chorus-hap-session"]
