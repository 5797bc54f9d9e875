"""The `chorus` command: up, serve, hap, status, tail, ucxl."""

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
from rich.text import Text

from chorus_cli.advertise import BusAdvertisement, start_advertising
from chorus_cli.constellation import Constellation, PortTakenError, read_state
from chorus_cli.roster import SERVICE_MODULES
from chorus_cli.supervision import Phase, RestartPolicy
from chorus_cli.ucxl import app as ucxl_app
from chorus_common.errors import ChorusError

app = typer.Typer(
    help="CHORUS: coordination runtime for a fleet of AI and human agents.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(ucxl_app, name="ucxl")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="where state, logs and NATS data live")]


def _table(constellation: Constellation) -> Table:
    """The live table: every replica, its state, restarts and how it last ended."""
    table = Table(title="CHORUS constellation")
    table.add_column("service", no_wrap=True)
    for col in ("url", "pid", "state", "restarts", "last exit"):
        table.add_column(col)
    records = constellation.supervisor.records if constellation.supervisor else {}
    for p in constellation.processes:
        record = records.get(p.instance)
        phase = record.phase if record else Phase.STARTING
        colour = {
            Phase.READY: "green",
            Phase.STARTING: "yellow",
            Phase.NOT_READY: "yellow",
            Phase.RESTARTING: "yellow",
        }.get(phase, "red")
        table.add_row(
            p.instance,
            p.url,
            str(p.proc.pid) if p.proc is not None and p.running else "-",
            f"[{colour}]{phase.value}[/{colour}]",
            str(record.restarts) if record else "0",
            (record.last_exit or "-") if record else "-",
        )
    return table


@app.command()
def up(
    data_dir: DataDir = Path(".chorus"),
    ha: Annotated[
        bool,
        typer.Option(
            "--ha",
            help="the Helm chart's default shape: 3 election, 2 gateways, 2 coordinators, "
            "3 DHT, 2 backbeat replicas (14 processes)",
        ),
    ] = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="a 3-node NATS JetStream cluster (ports --nats-port and the next two) "
            "with streams and KV at R3; with or without --ha",
        ),
    ] = False,
    nats_url: Annotated[
        str | None, typer.Option(help="use this NATS server instead of the embedded one")
    ] = None,
    nats_port: Annotated[
        int | None, typer.Option(help="port of the embedded NATS (default 4222, or a free one)")
    ] = None,
    port_base: Annotated[
        int | None, typer.Option(help="first HTTP port (default 8700, or free ones)")
    ] = None,
    ready_timeout: Annotated[
        float,
        typer.Option(help="seconds a service may take to get ready before it is restarted"),
    ] = 30.0,
    lazy_fsync: Annotated[
        bool,
        typer.Option(
            "--lazy-fsync",
            help="JetStream sync_interval 2m instead of always (faster, may lose acknowledged writes on power loss)",
        ),
    ] = False,
) -> None:
    """Start NATS and every service, keep them running (restarting any that dies), stop all on Ctrl-C."""
    data_dir.mkdir(parents=True, exist_ok=True)
    constellation = Constellation(
        data_dir=data_dir.resolve(),
        nats_url=nats_url,
        nats_port=nats_port,
        port_base=port_base,
        sync_always=not lazy_fsync,
        ha=ha,
        cluster=cluster,
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
        constellation.start_services()
    except (PortTakenError, ChorusError) as exc:
        err.print(f"[red]chorus up: {exc}[/red]")
        constellation.stop()
        raise typer.Exit(2) from None
    supervisor = constellation.supervise(RestartPolicy(ready_timeout=ready_timeout))
    constellation.write_state()
    for note in constellation.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    embedded = (
        f"embedded {len(constellation.nats_servers)}-node cluster, streams and KV at "
        f"R{constellation.js_replicas}"
        if constellation.nats_cluster
        else "embedded"
    )
    console.print(
        f"NATS: {url}"
        + (
            f" ({embedded}, JetStream sync_interval={'2m' if lazy_fsync else 'always'})"
            if constellation.nats_servers
            else ""
        )
    )
    advertised: BusAdvertisement | None = None
    summarised = False
    try:
        # no auto-refresh thread: the CLI stays single-threaded so restarts can fork too
        with Live(
            _table(constellation),
            console=console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            while not stopping:
                for event in supervisor.tick():
                    # a log tail may hold anything: print it as text, never as markup
                    style = "red" if event.failed else "yellow"
                    console.print(Text(event.text, style=style), soft_wrap=True)
                live.update(_table(constellation), refresh=True)
                if not summarised and (
                    supervisor.settled or time.monotonic() - started >= ready_timeout
                ):
                    summarised = True
                    _summary(constellation, time.monotonic() - started, data_dir)
                    advertised = _advertise(url, int(url.split(",")[0].rsplit(":", 1)[-1]))
                    console.print("Ctrl-C stops everything.")
                time.sleep(0.2)
    finally:
        console.print("stopping…")
        if advertised is not None:
            with contextlib.suppress(Exception):
                advertised.close()
        constellation.stop()
        console.print("stopped.")
    if any(r.phase is Phase.FAILED for r in supervisor.records.values()):
        raise typer.Exit(1)


def _summary(constellation: Constellation, elapsed: float, data_dir: Path) -> None:
    """The lines printed once every service is ready or given up on (or the wait ran out)."""
    assert constellation.supervisor is not None
    records = constellation.supervisor.records
    total = len(records)
    ready = [n for n, r in records.items() if r.phase is Phase.READY]
    if len(ready) == total:
        console.print(f"[green]all {total} services ready in {elapsed:.1f}s[/green]")
    else:
        failed = [n for n, r in records.items() if r.phase is Phase.FAILED]
        waiting = [n for n, r in records.items() if not r.settled]
        console.print(
            f"[yellow]{len(ready)} of {total} services ready in {elapsed:.1f}s[/yellow]"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + (f"; not ready yet: {', '.join(waiting)}" if waiting else "")
        )
    console.print(constellation.license_note, soft_wrap=True)
    # soft_wrap: a token is copied from the terminal, so it must never be broken over lines
    console.print(
        f"admin token: {constellation.admin_token}  (also in {data_dir / 'admin-token'})",
        soft_wrap=True,
    )
    console.print(
        f"read token: {constellation.read_token}  (also in {data_dir / 'read-token'})",
        soft_wrap=True,
    )
    try:
        enrol = constellation.enrolment_token()
    except Exception as exc:  # the gateway not ready: say so, the rest still runs
        console.print(f"[yellow]no enrolment token yet:[/yellow] {exc}", soft_wrap=True)
    else:
        console.print(f"enrolment token (one agent, once, 24 h): {enrol}", soft_wrap=True)
    url = constellation.nats_url
    console.print(f"debug: nats sub --server {url} 'chorus.>'   |   nats micro ls --server {url}")


def _advertise(nats_url: str, port: int) -> BusAdvertisement | None:
    """Announce the bus over mDNS (`_chorus._tcp.local.`) so agents on the LAN can find it."""
    advertisement = start_advertising(nats_url, port)
    if not advertisement.advertised:
        console.print(
            f"[yellow]note:[/yellow] mDNS advertisement unavailable ({advertisement.answer}); "
            "agents need CHORUS_NATS_URL",
            soft_wrap=True,
        )
        advertisement.close()
        return None
    console.print(
        "mDNS: advertised as _chorus._tcp.local. (chorus_common.discovery.discover_bus finds it)"
    )
    return advertisement


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
    """Readiness of every service of the running constellation; exit 1 unless all are ready.

    Beside each instance's own /health answer it shows what `chorus up` recorded:
    its state (starting, ready, restarting, failed…), pid, restarts and last exit.
    """
    targets: list[dict[str, Any]]
    if url:
        targets = [{"name": u, "url": u} for u in url]
    else:
        state = read_state(data_dir)
        if state is None:
            err.print(
                f"[red]no running constellation found in {data_dir} (start one with `chorus up`, or pass --url)[/red]"
            )
            raise typer.Exit(2)
        targets = list(state["services"])  # type: ignore[call-overload]
    rows = []
    for target in targets:
        base = target["url"]
        row: dict[str, Any] = {
            "name": target["name"],
            "service": target.get("service"),
            "url": base,
            "pid": target.get("pid"),
            "state": target.get("state"),
            "restarts": target.get("restarts"),
            "last_exit": target.get("last_exit"),
            "failure": target.get("failure"),
        }
        try:
            resp = httpx.get(f"{base}/health", timeout=2.0)
            doc = resp.json()
            row.update(ready=bool(doc.get("ready")), status=doc.get("status", "?"))
        except (httpx.HTTPError, ValueError) as exc:
            row.update(ready=False, status=f"unreachable ({type(exc).__name__})")
        if row["state"] == Phase.FAILED.value:
            row.update(ready=False, status=f"failed: {row['failure']}")
        rows.append(row)
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        table = Table(title="CHORUS status")
        table.add_column("service", no_wrap=True)
        for col in ("url", "pid", "state", "ready", "health", "restarts", "last exit"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["name"],
                r["url"],
                str(r["pid"] or "-"),
                str(r["state"] or "-"),
                "[green]yes[/green]" if r["ready"] else "[red]no[/red]",
                Text(str(r["status"])),
                str(r["restarts"] if r["restarts"] is not None else "-"),
                str(r["last_exit"] or "-"),
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
