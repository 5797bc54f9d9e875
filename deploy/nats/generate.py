"""Generate the NATS authorization files from chorus_cli.nats_users; never hand-edit them.

    .venv/bin/python deploy/nats/generate.py             # write the files below
    .venv/bin/python deploy/nats/generate.py --check     # fail if a committed file is stale
    .venv/bin/python deploy/nats/generate.py --passwords  # print new passwords for a compose .env

Files:
  deploy/compose/nats-auth.conf            included by deploy/compose/nats.conf
  deploy/helm/chorus/files/nats-auth.conf  included by the chart's embedded NATS
  deploy/helm/chorus/files/nats-users.yaml the users (and password variables) the chart's
                                           Secret, NATS pods and service pods are built from
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chorus_cli.nats_users import USERS, render_authorization, render_user_index
from chorus_common.nats_auth import new_passwords

DEPLOY = Path(__file__).resolve().parents[1]


def render_all() -> dict[Path, str]:
    """Every generated file and its text."""
    conf = render_authorization()
    return {
        DEPLOY / "compose" / "nats-auth.conf": conf,
        DEPLOY / "helm" / "chorus" / "files" / "nats-auth.conf": conf,
        DEPLOY / "helm" / "chorus" / "files" / "nats-users.yaml": render_user_index(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if a committed file differs")
    mode.add_argument(
        "--passwords", action="store_true", help="print KEY=value lines of new random passwords"
    )
    args = parser.parse_args(argv)
    if args.passwords:
        sys.stdout.writelines(f"{k}={v}\n" for k, v in new_passwords(USERS).items())
        return 0
    stale = []
    for path, text in render_all().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(DEPLOY.parent)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(
            "stale NATS authorization files (run deploy/nats/generate.py): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
