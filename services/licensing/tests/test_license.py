"""Offline verification: every bad license is refused with its own reason."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process, wait_until
from chorus_licensing import LicensingService
from chorus_licensing.license import LicenseError, load_license_file, verify_license
from chorus_licensing.service import LicensingSettings

from .conftest import make_license


def _doc(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_good_license_verifies(tmp_path: Path) -> None:
    issued, issuer = make_license(tmp_path)
    lic = verify_license(_doc(issued.license_file), issuer.public_key, "local")
    assert lic.seats == 10 and lic.customer == "acme"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d, k: d["license"].update(seats=1000), "tampered"),
        (lambda d, k: None, "wrong_issuer"),
        (lambda d, k: None, "expired"),
        (lambda d, k: None, "not_yet_valid"),
        (lambda d, k: None, "wrong_cluster"),
        (lambda d, k: d.pop("signature"), "malformed"),
        (lambda d, k: d["license"].update(seats="many"), "malformed"),
    ],
)
def test_each_bad_license_names_its_reason(
    tmp_path: Path, mutate: Callable[..., Any], reason: str
) -> None:
    now = datetime.now(UTC)
    kwargs: dict[str, Any] = {}
    if reason == "expired":
        kwargs = {"not_before": now - timedelta(days=10), "days": 1}
    if reason == "not_yet_valid":
        kwargs = {"not_before": now + timedelta(days=2)}
    if reason == "wrong_cluster":
        kwargs = {"cluster_id": "prod-eu"}
    issued, issuer = make_license(tmp_path, **kwargs)
    doc = _doc(issued.license_file)
    mutate(doc, issuer)
    key = AgentKey.generate().public_key if reason == "wrong_issuer" else issuer.public_key
    with pytest.raises(LicenseError) as info:
        verify_license(doc, key, "local")
    assert info.value.reason == reason
    assert info.value.detail


def test_not_json_is_malformed() -> None:
    with pytest.raises(LicenseError) as info:
        load_license_file("{nope")
    assert info.value.reason == "malformed"


async def test_invalid_license_keeps_service_up_and_not_ready_with_the_reason(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    issued, issuer = make_license(
        tmp_path, not_before=datetime.now(UTC) - timedelta(days=9), days=1
    )
    settings = make_settings(
        LicensingSettings, license_file=issued.license_file, license_issuer_key=issuer.public_key
    )
    service = LicensingService(settings)
    async with (
        serve_in_process(service, ready=False) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):

        async def refused() -> bool:
            return (
                await client.get("/health/ready")
            ).status_code == 503 and service.setup_done.is_set()

        await wait_until(refused, timeout=10, message="not ready")
        failing = {c["name"]: c for c in (await client.get("/health/ready")).json()["failing"]}
        assert "expired" in failing["license"]["detail"]
        status = (await client.get("/v1/license")).json()
        assert status["valid"] is False and status["error"] == "expired"
        assert (await client.get("/health/live")).status_code == 200


def test_cli_keygen_sign_verify(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "chorus_licensing.cli"]
    run = lambda *a: subprocess.run([*cli, *a], capture_output=True, text=True, timeout=60)  # noqa: E731
    assert run("keygen", "--out", str(tmp_path / "issuer.key")).returncode == 0
    signed = run(
        "sign",
        "--issuer-key",
        str(tmp_path / "issuer.key"),
        "--customer",
        "acme",
        "--cluster",
        "local",
        "--seats",
        "3",
        "--out",
        str(tmp_path / "acme.json"),
    )
    assert signed.returncode == 0, signed.stderr
    ok = run("verify", str(tmp_path / "acme.json"), "--issuer-pub", str(tmp_path / "issuer.pub"))
    assert ok.returncode == 0 and "3 seats" in ok.stdout
    doc = json.loads((tmp_path / "acme.json").read_text())
    doc["license"]["seats"] = 300
    (tmp_path / "acme.json").write_text(json.dumps(doc))
    bad = run("verify", str(tmp_path / "acme.json"), "--issuer-pub", str(tmp_path / "issuer.pub"))
    assert bad.returncode == 1 and "tampered" in bad.stderr
