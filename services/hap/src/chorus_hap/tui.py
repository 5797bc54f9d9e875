"""The terminal face of HAP: nine commands, a composition wizard, and a live line of the bus.

    chorus hap --agent alice            (or: python -m chorus_hap.tui --agent alice)

Commands: help, status, peers, announce, hmmm, ucxl, decide, web, quit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.history import FileHistory
from prompt_toolkit.patch_stdout import patch_stdout

from chorus_common.bus import Bus
from chorus_common.config import load_settings
from chorus_common.errors import ChorusError
from chorus_hap.portal import WIZARD_TYPES, FeedItem, Portal
from chorus_hap.settings import HapSettings
from chorus_hap.topics import LICENSING, SERVICE_HEALTH, HealthQuery, ServiceHealth

__all__ = ["COMMANDS", "Terminal", "main"]

HELP = """commands:
  status                         your identity, the admin, the bus, the license
  peers                          agents with roles, capabilities, availability
  announce ROLE [CAPABILITY...]  tell the mesh who you are
  hmmm                           compose an HMMM message: thread -> type -> text -> preview -> send
  ucxl PREFIX | ucxl get ADDRESS browse and fetch UCXL addresses from the DHT
  decide [list] | decide open TITLE | decide vote ID approve|reject|abstain [COMMENT]
  web                            where the web UI is
  help, quit"""

COMMANDS = ["help", "status", "peers", "announce", "hmmm", "ucxl", "decide", "web", "quit"]


class Cancelled(Exception):
    pass


class Terminal:
    def __init__(
        self,
        portal: Portal,
        bus: Bus,
        agent: str,
        settings: HapSettings,
        session: PromptSession[str] | None = None,
    ) -> None:
        self.portal, self.bus, self.agent, self.settings = portal, bus, agent, settings
        self.session = session or PromptSession(
            history=FileHistory(str(settings.data_dir / "hap-history")),
            completer=WordCompleter([*COMMANDS, "list", "open", "vote", "get", *WIZARD_TYPES]),
        )
        self.last: FeedItem | None = None
        self.handlers: dict[str, Callable[[list[str]], Awaitable[None]]] = {
            "help": self.help,
            "status": self.status,
            "peers": self.peers,
            "announce": self.announce,
            "hmmm": self.hmmm,
            "ucxl": self.ucxl,
            "decide": self.decide,
            "web": self.web,
        }

    def say(self, text: str) -> None:
        print_formatted_text(text)

    def toolbar(self) -> str:
        if self.last is None:
            return " waiting for messages on chorus.> "
        i = self.last
        return f" {i.type} from {i.sender}: {i.text[:80]} "

    async def ask(self, question: str) -> str:
        answer = (await self.session.prompt_async(question, bottom_toolbar=self.toolbar)).strip()
        if answer.lower() == "cancel":
            raise Cancelled
        return answer

    async def run(self) -> None:
        def live(item: FeedItem) -> None:
            self.last = item
            if self.session.app.is_running:
                self.session.app.invalidate()

        self.portal.listeners.add(live)
        self.say(f"CHORUS Human Agent Portal: you are {self.agent}. Type help for commands.")
        with patch_stdout():
            while True:
                try:
                    line = await self.session.prompt_async("hap> ", bottom_toolbar=self.toolbar)
                except (EOFError, KeyboardInterrupt):
                    break
                words = shlex.split(line) if line.strip() else []
                if not words:
                    continue
                if words[0] in ("quit", "exit"):
                    break
                handler = self.handlers.get(words[0])
                if handler is None:
                    self.say(f"unknown command {words[0]!r}; type help")
                    continue
                try:
                    await handler(words[1:])
                except Cancelled:
                    self.say("cancelled; nothing was sent")
                except ChorusError as exc:
                    self.say(f"error: {exc.detail}")
                except Exception as exc:  # a service down must not end the session
                    self.say(f"error: {type(exc).__name__}: {exc}")
        self.say("bye")

    async def help(self, args: list[str]) -> None:
        self.say(HELP)

    async def status(self, args: list[str]) -> None:
        person = await self.portal.person(self.agent)
        admin = await self.portal.admin()
        license_state = "unknown"
        try:
            health = await self.bus.topic(SERVICE_HEALTH).request(
                HealthQuery(), ServiceHealth, timeout=1, service=LICENSING
            )
            license_state = health.checks.get("license", "unknown")
        except Exception:
            license_state = "licensing service not reachable"
        self.say(
            f"you: {self.agent} (role {self.settings.hap_role}), key {person.key.public_key[:16]}…, "
            f"feed at entry {person.writer.state.seq}"
        )
        self.say(
            f"admin: {admin['admin'] or 'none elected'}"
            + (f" (term {admin['term']})" if admin["term"] else "")
        )
        self.say(
            f"bus: {'connected' if self.bus.is_connected else 'disconnected'} at {self.settings.nats_url}"
        )
        self.say(f"license: {license_state}")

    async def peers(self, args: list[str]) -> None:
        peers = await self.portal.peers()
        if not peers:
            self.say("no agents registered yet")
        for p in peers:
            self.say(
                f"{p.get('agent'):<20} roles={','.join(p.get('roles') or []) or '-'} "
                f"capabilities={','.join(p.get('capabilities') or []) or '-'} "
                f"availability={p.get('availability') or '-'}"
            )

    async def announce(self, args: list[str]) -> None:
        if not args:
            self.say("usage: announce ROLE [CAPABILITY...]")
            return
        await self.portal.announce(self.agent, args[0], args[1:])
        self.say(
            f"announced {self.agent} as {args[0]} with {', '.join(args[1:]) or 'no capabilities'}"
        )

    async def hmmm(self, args: list[str]) -> None:
        self.say("HMMM wizard (type cancel at any step)")
        where = await self.ask("thread or task:#id (e.g. api-v2 or task:t-12): ")
        thread, task = (
            (None, where.removeprefix("task:"))
            if where.startswith("task:")
            else (where or None, None)
        )
        self.say("types: " + ", ".join(WIZARD_TYPES))
        mtype = await self.ask("type [meta_discussion]: ") or "meta_discussion"
        text = await self.ask("message: ")
        preview = await self.portal.compose(self.agent, mtype, text, thread=thread, task=task)
        self.say("preview: " + preview.envelope.payload.model_dump_json(exclude_none=True))
        if preview.findings:
            self.say("SHHH redacted: " + ", ".join(sorted({f.pattern for f in preview.findings})))
        self.say("to: " + ", ".join(preview.subjects))
        if (await self.ask("sign and send? [y/N] ")).lower() not in ("y", "yes"):
            raise Cancelled
        result = await self.portal.send(self.agent, preview)
        self.say(f"sent {result['id']} as entry {result['feed_seq']} of your feed")

    async def ucxl(self, args: list[str]) -> None:
        if len(args) >= 2 and args[0] == "get":
            record = await self.portal.ucxl(f"/v1/ucxl/{args[1]}", decrypt=True)
            self.say(json.dumps(record, indent=2))
            return
        if not args:
            self.say("usage: ucxl PREFIX | ucxl get ADDRESS")
            return
        listing = await self.portal.ucxl("/v1/ucxl", {"prefix": args[0]})
        for item in listing.get("items", listing.get("addresses", [])):
            self.say(item["address"] if isinstance(item, dict) else str(item))

    async def decide(self, args: list[str]) -> None:
        if not args or args[0] == "list":
            if not self.portal.book.decisions:
                self.say("no decisions yet; open one with: decide open TITLE")
            for d in self.portal.book.decisions.values():
                t = d.tally()
                state = f"closed: {d.outcome}" if d.closed else f"open, needs {d.quorum}"
                self.say(
                    f"{d.decision_id}  {d.title}  approve {t['approve']} reject {t['reject']} "
                    f"abstain {t['abstain']}  ({state})"
                )
            return
        if args[0] == "open" and len(args) >= 2:
            decision_id = await self.portal.open_decision(self.agent, " ".join(args[1:]))
            await self.portal.wait_decision(decision_id)
            self.say(f"opened decision {decision_id}")
            return
        if args[0] == "vote" and len(args) >= 3:
            decision_id, choice, comment = args[1], args[2], " ".join(args[3:])
            await self.portal.vote(self.agent, decision_id, choice, comment)
            decision = self.portal.book.decisions[decision_id]
            await self.portal.wait_for(lambda: self.agent in decision.votes, 5, "your vote")
            t = decision.tally()
            self.say(
                f"voted {choice} on {decision_id}: approve {t['approve']} reject {t['reject']} "
                f"abstain {t['abstain']}"
                + (f"; closed: {decision.outcome}" if decision.closed else "")
            )
            return
        self.say(
            "usage: decide [list] | decide open TITLE | decide vote ID approve|reject|abstain [COMMENT]"
        )

    async def web(self, args: list[str]) -> None:
        url = os.environ.get("CHORUS_HAP_WEB_URL") or await asyncio.to_thread(_web_url_of_chorus_up)
        if url:
            self.say(f"web UI: {url}/ui (sign in with your token)")
        else:
            self.say(
                "no web UI found: start one with `chorus up` or `chorus serve hap`, "
                "or set CHORUS_HAP_WEB_URL"
            )


def _web_url_of_chorus_up() -> str | None:
    state = Path(".chorus/up.json")
    if not state.exists():
        return None
    services = json.loads(state.read_text())["services"]
    return next((s["url"] for s in services if s["name"] == "hap"), None)


async def main_async(agent: str | None) -> int:
    settings = load_settings(HapSettings)
    bus = Bus(settings, name=f"chorus-hap-tui-{agent or settings.agent_id()}")
    try:
        await bus.connect(timeout=10)
    except ChorusError as exc:
        print(f"chorus hap: {exc.detail}", file=sys.stderr)
        return 2
    portal = Portal(
        bus, settings.data_dir, settings.hap_quorum, settings.hap_role, settings.hap_dht_url
    )
    await portal.start()
    name = agent or settings.agent_id()
    await portal.person(name)
    try:
        await Terminal(portal, bus, name, settings).run()
    finally:
        await portal.stop()
        await bus.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chorus hap", description="CHORUS Human Agent Portal (terminal)"
    )
    parser.add_argument(
        "--agent", help="your agent id (default CHORUS_HAP_AGENT_ID or human-<node>)"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main_async(args.agent))
    except ChorusError as exc:
        print(f"chorus hap: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
