"""`chorus ucxl`: list, read and upgrade sealed UCXL values, opened on this machine.

The role key is read from a file or ``CHORUS_ROLE_KEY`` and used here only; the
DHT serves ciphertext and never sees it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from chorus_cli.constellation import read_state
from chorus_common.errors import ChorusError
from chorus_common.sealed import RoleKeyPair
from chorus_common.ucxl_client import UcxlClient

app = typer.Typer(help="Browse, read and upgrade UCXL values in the DHT (opened locally).")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="the running `chorus up`'s data dir")]
Url = Annotated[
    str | None, typer.Option(help="a DHT node's base URL (default: the running `chorus up`)")
]
Token = Annotated[
    str | None,
    typer.Option(
        envvar="CHORUS_TOKEN",
        help="bearer token (read scope; admin for upgrade); default: the `chorus up` token",
    ),
]
Role = Annotated[str, typer.Option(help="the role whose key opens the values")]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file", help="file holding the role's X25519 private key (else CHORUS_ROLE_KEY)"
    ),
]


def _target(url: str | None, token: str | None, data_dir: Path) -> tuple[str, str | None]:
    """The DHT URL and token: given ones, else those of the `chorus up` in ``data_dir``."""
    if url is None:
        state = read_state(data_dir)
        services: list[dict[str, Any]] = list(state["services"]) if state else []  # type: ignore[call-overload]
        url = next((s["url"] for s in services if s.get("service") == "dht"), None)
        if url is None:
            err.print(f"[red]no DHT found in {data_dir}: pass --url (or start `chorus up`)[/red]")
            raise typer.Exit(2)
    if token is None:
        for name in ("admin-token", "read-token"):
            path = data_dir / name
            if path.exists():
                token = path.read_text().strip()
                break
    return url, token


def _role_key(key_file: Path | None) -> RoleKeyPair:
    text = key_file.read_text().strip() if key_file else os.environ.get("CHORUS_ROLE_KEY")
    if not text:
        err.print("[red]no role key: pass --key-file or set CHORUS_ROLE_KEY[/red]")
        raise typer.Exit(2)
    return RoleKeyPair.from_private(text)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ChorusError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None


@app.command("ls")
def list_values(
    prefix: Annotated[str, typer.Argument(help="address prefix")] = "ucxl://",
    url: Url = None,
    token: Token = None,
    data_dir: DataDir = Path(".chorus"),
) -> None:
    """Addresses under PREFIX and the roles each is sealed to (no values)."""
    base, bearer = _target(url, token, data_dir)

    async def run() -> list[dict[str, Any]]:
        async with UcxlClient(base, bearer) as client:
            return await client.addresses(prefix)

    for item in _run(run()):
        console.print(f"{item['address']}  roles={','.join(item['roles'])}")


@app.command()
def get(
    address: Annotated[str, typer.Argument(help="a UCXL address")],
    role: Role,
    key_file: KeyFile = None,
    url: Url = None,
    token: Token = None,
    data_dir: DataDir = Path(".chorus"),
) -> None:
    """Fetch the sealed value at ADDRESS and open it here with the role's key."""
    base, bearer = _target(url, token, data_dir)
    key = _role_key(key_file)

    async def run() -> Any:
        async with UcxlClient(base, bearer) as client:
            return await client.get(address, role, key)

    console.print_json(json.dumps(_run(run())))


@app.command()
def upgrade(
    prefix: Annotated[str, typer.Argument(help="address prefix to walk")],
    role: Role,
    key_file: KeyFile = None,
    url: Url = None,
    token: Token = None,
    data_dir: DataDir = Path(".chorus"),
) -> None:
    """Seal again, in the current (HPKE) format, every older record under PREFIX that ROLE opens.

    DHT nodes cannot do this themselves: they never hold a role key. Needs an admin token.
    """
    base, bearer = _target(url, token, data_dir)
    key = _role_key(key_file)

    async def run() -> tuple[int, int, list[str]]:
        upgraded = current = 0
        skipped: list[str] = []
        async with UcxlClient(base, bearer) as client:
            for item in await client.addresses(prefix):
                address = item["address"]
                if role not in item["roles"]:
                    skipped.append(f"{address}: not sealed to {role}")
                    continue
                try:
                    if await client.upgrade(address, role, key):
                        upgraded += 1
                    else:
                        current += 1
                except ChorusError as exc:
                    skipped.append(f"{address}: {exc.detail}")
        return upgraded, current, skipped

    upgraded, current, skipped = _run(run())
    for line in skipped:
        err.print(f"[yellow]skipped {line}[/yellow]")
    console.print(f"upgraded {upgraded}, already current {current}, skipped {len(skipped)}")
    if skipped:
        raise typer.Exit(1)
