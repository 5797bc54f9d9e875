"""The `chorus` command: up, serve, status, tail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from chorus_cli.constellation import Constellation, PortTakenError, read_state
from chorus_common.errors import ChorusError
from chorus_common.processes import SERVICE_MODULES, ServiceProcess

app = typer.Typer(
    help="CHORUS: coordination runtime for a fleet of AI and human agents.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="where state, logs and NATS data live")]


def _table(processes: list[ServiceProcess], states: dict[str, str]) -> Table:
    table = Table(title="CHORUS constellation")
    table.add_column("service")
    table.add_column("url")
    table.add_column("state")
    for p in processes:
        state = states.get(p.instance, "starting")
        colour = {"ready": "green", "starting": "yellow"}.get(state, "red")
        table.add_row(p.instance, p.url, f"[{colour}]{state}[/{colour}]")
    return table


@app.command()
def up(
    data_dir: DataDir = Path(".chorus"),
    nats_url: Annotated[
        str | None, typer.Option(help="use this NATS server instead of the embedded one")
    ] = None,
    nats_port: Annotated[
        int | None, typer.Option(help="port of the embedded NATS (default 4222, or a free one)")
    ] = None,
    port_base: Annotated[
        int | None, typer.Option(help="first HTTP port (default 8700, or free ones)")
    ] = None,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for every service")] = 30.0,
    lazy_fsync: Annotated[
        bool,
        typer.Option(
            "--lazy-fsync",
            help="JetStream sync_interval 2m instead of always (faster, may lose acknowledged writes on power loss)",
        ),
    ] = False,
) -> None:
    """Start NATS and every service, show readiness, stop everything on Ctrl-C."""
    data_dir.mkdir(parents=True, exist_ok=True)
    constellation = Constellation(
        data_dir=data_dir.resolve(),
        nats_url=nats_url,
        nats_port=nats_port,
        port_base=port_base,
        sync_always=not lazy_fsync,
        fork=True,
    )
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = time.monotonic()
    try:
        url = constellation.start_nats()
        processes = constellation.start_services()
    except (PortTakenError, ChorusError) as exc:
        err.print(f"[red]chorus up: {exc}[/red]")
        constellation.stop()
        raise typer.Exit(2) from None
    for note in constellation.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(
        f"NATS: {url}"
        + (
            " (embedded, JetStream sync_interval=always)"
            if constellation.nats and not lazy_fsync
            else ""
        )
    )
    states: dict[str, str] = {}
    advertised: Any = None
    try:
        with Live(
            _table(processes, states), console=console, refresh_per_second=8, transient=False
        ) as live:
            while not stopping and time.monotonic() - started < ready_timeout:
                for p in processes:
                    if not p.running:
                        states[p.instance] = f"exited ({p.exit_code})"
                    elif states.get(p.instance) != "ready" and p.is_ready(timeout=0.5):
                        states[p.instance] = "ready"
                live.update(_table(processes, states))
                if all(states.get(p.instance) == "ready" for p in processes):
                    break
                if any(not p.running for p in processes):
                    break
                time.sleep(0.1)
        console.print()
        elapsed = time.monotonic() - started
        failed = [p for p in processes if states.get(p.instance) != "ready"]
        if stopping:
            pass
        elif failed:
            for p in failed:
                err.print(
                    f"[red]{p.instance} is not ready[/red] (log: {p.log_path})\n{p.log_tail(800)}"
                )
            raise typer.Exit(1)
        else:
            console.print(f"[green]all {len(processes)} services ready in {elapsed:.1f}s[/green]")
            console.print(constellation.license_note, soft_wrap=True)
            advertised = _advertise(url)
            console.print(
                f"admin token: {constellation.admin_token}  (also in {data_dir / 'admin-token'})"
            )
            console.print(
                f"debug: nats sub --server {url} 'chorus.>'   |   nats micro ls --server {url}"
            )
            console.print("Ctrl-C stops everything.")
        while not stopping:
            for p in processes:
                if not p.running and states.get(p.instance) == "ready":
                    states[p.instance] = f"exited ({p.exit_code})"
                    err.print(
                        f"[red]{p.instance} exited with code {p.exit_code}[/red]; log: {p.log_path}"
                    )
            time.sleep(0.2)
    finally:
        console.print("stopping…")
        if advertised is not None:
            with contextlib.suppress(Exception):
                advertised.close()
        constellation.stop()
        console.print("stopped.")


def _advertise(nats_url: str) -> Any:
    """Announce the bus over mDNS (`_chorus._tcp.local.`) so agents on the LAN can find it."""
    from chorus_common.discovery import advertise_bus_blocking

    port = int(nats_url.rsplit(":", 1)[-1])
    try:
        zc = advertise_bus_blocking(nats_url, "local", port)
    except Exception as exc:  # no multicast here: say so, the constellation works without it
        console.print(
            f"[yellow]note:[/yellow] mDNS advertisement unavailable ({exc}); agents need CHORUS_NATS_URL"
        )
        return None
    console.print(
        "mDNS: advertised as _chorus._tcp.local. (chorus_common.discovery.discover_bus finds it)"
    )
    return zc


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="service: " + ", ".join(SERVICE_MODULES))],
) -> None:
    """Run one service in the foreground (the container entry point)."""
    module = SERVICE_MODULES.get(name)
    if module is None:
        err.print(
            f"[red]unknown service {name!r}; choose one of: {', '.join(SERVICE_MODULES)}[/red]"
        )
        raise typer.Exit(2)
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


@app.command()
def hap(
    agent: Annotated[str | None, typer.Option(help="your agent id on the mesh")] = None,
    nats_url: Annotated[
        str | None, typer.Option(help="NATS URL (default: the running `chorus up`)")
    ] = None,
    data_dir: DataDir = Path(".chorus"),
) -> None:
    """Join the mesh as a person: the HAP terminal UI (nine commands)."""
    if nats_url is None:
        state = read_state(data_dir)
        nats_url = str(state["nats_url"]) if state else os.environ.get("CHORUS_NATS_URL")
    if nats_url:
        os.environ["CHORUS_NATS_URL"] = nats_url
    os.environ.setdefault("CHORUS_DATA_DIR", str(data_dir / "hap-terminal"))
    sys.argv = ["chorus hap", *(["--agent", agent] if agent else [])]
    os.environ["CHORUS_HAP_MODE"] = "terminal"
    runpy.run_module("chorus_hap", run_name="__main__", alter_sys=True)


@app.command()
def status(
    data_dir: DataDir = Path(".chorus"),
    url: Annotated[
        list[str] | None,
        typer.Option(help="service base URL (repeatable) instead of the running `chorus up`"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Readiness of every service of the running constellation."""
    targets: list[tuple[str, str]]
    if url:
        targets = [(u, u) for u in url]
    else:
        state = read_state(data_dir)
        if state is None:
            err.print(
                f"[red]no running constellation found in {data_dir} (start one with `chorus up`, or pass --url)[/red]"
            )
            raise typer.Exit(2)
        targets = [(s["name"], s["url"]) for s in state["services"]]  # type: ignore[index,union-attr]
    rows = []
    for name, base in targets:
        try:
            resp = httpx.get(f"{base}/health", timeout=2.0)
            doc = resp.json()
            rows.append(
                {
                    "name": name,
                    "url": base,
                    "ready": bool(doc.get("ready")),
                    "status": doc.get("status", "?"),
                }
            )
        except (httpx.HTTPError, ValueError) as exc:
            rows.append(
                {
                    "name": name,
                    "url": base,
                    "ready": False,
                    "status": f"unreachable ({type(exc).__name__})",
                }
            )
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        table = Table(title="CHORUS status")
        for col in ("service", "url", "ready", "status"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["name"],
                r["url"],
                "[green]yes[/green]" if r["ready"] else "[red]no[/red]",
                str(r["status"]),
            )
        console.print(table)
    if not all(r["ready"] for r in rows):
        raise typer.Exit(1)


@app.command()
def tail(
    subject: Annotated[
        str, typer.Argument(help="subject filter, e.g. 'chorus.>' or 'chorus.hmmm.*.>'")
    ] = "chorus.>",
    nats_url: Annotated[
        str | None, typer.Option(help="NATS URL (default: the running `chorus up`)")
    ] = None,
    data_dir: DataDir = Path(".chorus"),
    count: Annotated[int, typer.Option(help="stop after this many messages (0 = forever)")] = 0,
    raw: Annotated[bool, typer.Option(help="print the JSON as received")] = False,
) -> None:
    """Pretty-print envelopes from the bus as they pass, like `nats sub`."""
    from chorus_cli.tail import run_tail

    if nats_url is None:
        state = read_state(data_dir)
        nats_url = str(state["nats_url"]) if state else "nats://127.0.0.1:4222"
    try:
        asyncio.run(run_tail(nats_url, subject, count, raw, console))
    except ChorusError as exc:
        err.print(f"[red]chorus tail: {exc.detail}[/red]")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    app()
