"""`chorus-license dev`: one command makes a development license compose and Helm can use."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_common.signing import AgentKey
from chorus_common.testing import serve_in_process
from chorus_licensing import LicensingService
from chorus_licensing.cli import main
from chorus_licensing.license import LicenseError, load_license_file, verify_license
from chorus_licensing.service import LicensingSettings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verify(capsys: pytest.CaptureFixture[str], directory: Path, cluster: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(
        [
            "verify",
            str(directory / "license.json"),
            "--issuer-pub",
            str(directory / "issuer.pub"),
            "--cluster",
            cluster,
        ]
    )
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_dev_writes_a_license_the_verify_command_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "license"  # does not exist yet
    assert main(["dev", "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out

    assert sorted(p.name for p in out_dir.iterdir()) == ["issuer.key", "issuer.pub", "license.json"]
    assert _mode(out_dir / "issuer.key") == 0o600
    # the licensing container runs as another user (10001) and must read these two
    assert _mode(out_dir / "license.json") == 0o644
    assert _mode(out_dir / "issuer.pub") == 0o644
    issuer = AgentKey.load(out_dir / "issuer.key")
    assert (out_dir / "issuer.pub").read_text().strip() == issuer.public_key

    lic = verify_license(
        load_license_file((out_dir / "license.json").read_text()), issuer.public_key, "local"
    )
    assert (lic.cluster_id, lic.seats, lic.tier, lic.customer) == (
        "local",
        32,
        "development",
        "development",
    )
    rc, verified = _verify(capsys, out_dir, "local")
    assert rc == 0 and f"valid: {lic.license_id}" in verified and "32 seats" in verified

    for path in ("license.json", "issuer.pub", "issuer.key"):
        assert str(out_dir / path) in printed
    assert f"CHORUS_LICENSE_DIR={out_dir.resolve()} docker compose up" in printed
    assert (
        f"kubectl create secret generic chorus-license --from-file={out_dir}/license.json "
        f"--from-file={out_dir}/issuer.pub"
    ) in printed
    assert "issuer.key --" not in printed  # the private key never goes into the Secret
    assert "--set licensing.existingSecret=chorus-license" in printed
    # "local" is not the cluster compose and the chart run as: the output says so
    assert "--cluster chorus" in printed


def test_dev_license_is_bound_to_its_cluster_and_seats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev", "--out", str(tmp_path), "--cluster", "chorus", "--seats", "5"]) == 0
    printed = capsys.readouterr().out
    assert "'chorus', 5 seats" in printed
    assert "make it with --cluster" not in printed  # already the deployments' cluster

    rc, verified = _verify(capsys, tmp_path, "chorus")
    assert rc == 0 and "5 seats" in verified
    rc, refused = _verify(capsys, tmp_path, "local")
    assert rc == 1 and "wrong_cluster" in refused
    with pytest.raises(LicenseError) as info:
        verify_license(
            json.loads((tmp_path / "license.json").read_text()),
            AgentKey.generate().public_key,
            "chorus",
        )
    assert info.value.reason == "wrong_issuer"


def test_dev_again_keeps_a_fitting_license_and_reissues_for_another_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "license.json").read_text()
    key = (tmp_path / "issuer.key").read_text()
    (tmp_path / "issuer.key").chmod(0o644)
    capsys.readouterr()

    assert main(["dev", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("kept the existing development license")
    assert (tmp_path / "license.json").read_text() == first
    assert _mode(tmp_path / "issuer.key") == 0o600  # tightened again

    assert main(["dev", "--out", str(tmp_path), "--cluster", "chorus"]) == 0
    assert capsys.readouterr().out.startswith("made a development license")
    assert (tmp_path / "license.json").read_text() != first
    assert (tmp_path / "issuer.key").read_text() == key  # same issuer, new license
    assert _verify(capsys, tmp_path, "chorus")[0] == 0


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_dev_into_an_unwritable_directory_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    target = tmp_path / where
    assert main(["dev", "--out", str(target)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("chorus-license: ") and str(target) in out.err
    assert "directory" in out.err.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_dev_refuses_a_directory_with_an_unusable_license(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "license.json").write_text("{not json")
    assert main(["dev", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot be used" in err and str(tmp_path) in err
    assert (tmp_path / "license.json").read_text() == "{not json"  # left as it was


async def test_licensing_service_serves_the_dev_license_as_compose_and_helm_mount_it(
    tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    """CHORUS_LICENSE_FILE=DIR/license.json, CHORUS_LICENSE_ISSUER_KEY=DIR/issuer.pub (a path)."""
    assert main(["dev", "--out", str(tmp_path), "--seats", "7"]) == 0
    settings = make_settings(
        LicensingSettings,
        license_file=tmp_path / "license.json",
        license_issuer_key=str(tmp_path / "issuer.pub"),
    )
    assert settings.cluster == "local"
    service = LicensingService(settings)
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health/ready")).status_code == 200
        status = (await client.get("/v1/license")).json()
    assert status["valid"] is True and status["tier"] == "development"
    assert status["seats"]["total"] == 7
