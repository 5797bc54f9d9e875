"""`chorus-license`: create an issuer key pair, sign a license, inspect and verify one, or make a
development license for compose and Helm in one step (`dev`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from chorus_common.errors import ConfigError
from chorus_common.signing import AgentKey
from chorus_licensing.issuing import development_license, issue
from chorus_licensing.license import LicenseError, fingerprint, load_license_file, verify_license

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chorus-license", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="create an issuer key pair")
    keygen.add_argument(
        "--out", type=Path, required=True, help="private key file (0600); .pub beside it"
    )
    sign = sub.add_parser("sign", help="sign a new license")
    sign.add_argument("--issuer-key", type=Path, required=True)
    sign.add_argument("--customer", required=True)
    sign.add_argument("--cluster", required=True)
    sign.add_argument("--seats", type=int, required=True)
    sign.add_argument("--days", type=float, default=365)
    sign.add_argument("--tier", default="standard")
    sign.add_argument("--feature", action="append", default=[])
    sign.add_argument("--out", type=Path, required=True)
    dev = sub.add_parser(
        "dev",
        help="make a development license: DIR/license.json, DIR/issuer.pub, DIR/issuer.key",
    )
    dev.add_argument("--out", type=Path, required=True, metavar="DIR")
    dev.add_argument(
        "--cluster", default="local", help="CHORUS_CLUSTER it is valid for (default: local)"
    )
    dev.add_argument("--seats", type=int, default=32)
    for name in ("inspect", "verify"):
        p = sub.add_parser(name, help=f"{name} a license file")
        p.add_argument("license", type=Path)
        p.add_argument("--issuer-pub", type=Path, required=name == "verify")
        p.add_argument("--cluster", default="local")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        key = AgentKey.generate()
        key.save(args.out)
        args.out.with_suffix(".pub").write_text(key.public_key + "\n")
        print(
            f"issuer key {fingerprint(key.public_key)}: {args.out} (private), {args.out.with_suffix('.pub')}"
        )
        return 0
    if args.command == "dev":
        return _dev(args.out, args.cluster, args.seats)
    if args.command == "sign":
        issued = issue(
            args.out.parent,
            AgentKey.load(args.issuer_key),
            customer=args.customer,
            cluster_id=args.cluster,
            seats=args.seats,
            days=args.days,
            tier=args.tier,
            features=args.feature,
            name=args.out.name,
        )
        print(f"signed {issued.license.license_id} for {args.customer}: {args.out}")
        return 0
    try:
        doc = load_license_file(args.license.read_text())
    except OSError as exc:
        print(f"chorus-license: cannot read {args.license}: {exc}", file=sys.stderr)
        return 2
    except LicenseError as exc:
        print(f"chorus-license: {exc.detail}", file=sys.stderr)
        return 1
    if args.command == "inspect":
        print(json.dumps(doc, indent=2))
        if not args.issuer_pub:
            return 0
    try:
        lic = verify_license(doc, args.issuer_pub.read_text().strip(), args.cluster)
    except LicenseError as exc:
        print(f"refused ({exc.reason}): {exc.detail}", file=sys.stderr)
        return 1
    print(
        f"valid: {lic.license_id} for {lic.customer}, {lic.seats} seats, until {lic.expires_at.isoformat()}"
    )
    return 0


#: the cluster name compose.yaml and the Helm chart (config.cluster) run as
DEPLOY_CLUSTER = "chorus"


def _dev(directory: Path, cluster: str, seats: int) -> int:
    if seats < 1:
        print("chorus-license: --seats must be at least 1", file=sys.stderr)
        return 2
    if directory.exists() and not directory.is_dir():
        print(f"chorus-license: {directory} is not a directory", file=sys.stderr)
        return 2
    before = _read_or_none(directory / "license.json")
    try:
        issued = development_license(directory, cluster, seats)
        key = directory / "issuer.key"
        os.chmod(key, 0o600)  # the issuer's private key: also when an older file was looser
        # the licensing container runs as another user (10001): it must read these two
        for public in (issued.license_file, issued.issuer_public_key_file):
            os.chmod(public, 0o644)
    except OSError as exc:
        print(
            f"chorus-license: cannot write the development license to {directory}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    except (ValueError, KeyError, ConfigError) as exc:
        detail = exc.detail if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        print(
            f"chorus-license: {directory} holds a license.json or issuer.key that cannot be "
            f"used ({detail}); move them away or choose another --out",
            file=sys.stderr,
        )
        return 1
    lic = issued.license
    # development_license keeps a license.json that still fits (this cluster, > 1 day left)
    kept = before is not None and before == _read_or_none(issued.license_file)
    how = "kept the existing" if kept else "made a"
    print(
        f"{how} development license {lic.license_id}: cluster {lic.cluster_id!r}, "
        f"{lic.seats} seats, until {lic.expires_at.isoformat()}"
    )
    print(f"  {issued.license_file}  the signed license")
    print(f"  {issued.issuer_public_key_file}  the issuer public key")
    print(f"  {key}  the issuer private key (0600): keep it here, never ship it")
    if kept:
        print(f"  (delete {issued.license_file} to make a new one, e.g. with other --seats)")
    if cluster != DEPLOY_CLUSTER:
        print(
            f"It is valid only where CHORUS_CLUSTER={cluster}; compose.yaml and the Helm chart "
            f"run as cluster {DEPLOY_CLUSTER!r}: for them, make it with --cluster {DEPLOY_CLUSTER}."
        )
    print("Use it with Docker Compose:")
    # compose resolves a relative path against compose.yaml's directory, not this one
    print(f"  CHORUS_LICENSE_DIR={directory.resolve()} docker compose up")
    print("or with Helm (the private key stays out of the cluster):")
    print(
        f"  kubectl create secret generic chorus-license "
        f"--from-file={issued.license_file} --from-file={issued.issuer_public_key_file}"
    )
    print(
        "  helm upgrade --install chorus deploy/helm/chorus --reuse-values "
        "--set licensing.existingSecret=chorus-license"
    )
    return 0


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
