"""`chorus-license`: create an issuer key pair, sign a license, inspect and verify one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chorus_common.signing import AgentKey
from chorus_licensing.issuing import issue
from chorus_licensing.license import LicenseError, fingerprint, load_license_file, verify_license


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


if __name__ == "__main__":
    sys.exit(main())
