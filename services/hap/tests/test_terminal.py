"""The HAP terminal UI driven for real through tmux: every command, a wizard send, a vote."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chorus_common.bus import Bus, Delivery
from chorus_common.envelopes import Envelope
from chorus_common.testing import wait_until

TMUX = shutil.which("tmux")


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def keys(self, *keys: str) -> None:
        assert TMUX
        subprocess.run([TMUX, "send-keys", "-t", self.name, *keys], check=True)

    def line(self, text: str) -> None:
        self.keys("-l", text)
        self.keys("Enter")

    def screen(self) -> str:
        assert TMUX
        return subprocess.run(
            [TMUX, "capture-pane", "-p", "-J", "-S", "-200", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait(self, needle: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if needle in text:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not on screen within {timeout}s:\n{self.screen()}")


@pytest.mark.skipif(TMUX is None, reason="tmux missing: `make setup` installs it")
async def test_terminal_commands_wizard_and_vote(
    nats_url: str, tmp_path: Path, bus_client: Bus
) -> None:
    name = f"hap-{tmp_path.name}"[:40]
    env = (
        f"CHORUS_NATS_URL={nats_url} CHORUS_DATA_DIR={tmp_path} CHORUS_HAP_QUORUM=1 "
        f"CHORUS_HAP_MODE=terminal COLUMNS=160"
    )
    assert TMUX
    subprocess.run(
        [
            TMUX,
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "160",
            "-y",
            "50",
            f"env {env} {sys.executable} -m chorus_hap --agent dana",
        ],
        check=True,
    )
    term = Tmux(name)
    received: list[Envelope] = []

    async def on_msg(env: Envelope, d: Delivery) -> None:
        received.append(env)

    try:
        term.wait("you are dana", timeout=30)
        term.line("help")
        term.wait("decide [list]")
        term.line("status")
        term.wait("license: licensing service not reachable")
        assert "you: dana" in term.screen() and "bus: connected" in term.screen()
        term.line("announce reviewer python security")
        term.wait("announced dana as reviewer")
        term.line("peers")
        term.wait("capabilities=python,security")
        term.line("bogus")
        term.wait("unknown command 'bogus'")

        # the wizard: cancel once, then a full send that another agent receives
        term.line("hmmm")
        term.wait("thread or task")
        term.line("cancel")
        term.wait("cancelled; nothing was sent")
        await bus_client.subscribe("chorus.hmmm.release-7.>", "tui-test", on_msg)
        term.line("hmmm")
        term.wait("thread or task")
        term.line("release-7")
        term.wait("type [meta_discussion]")
        term.line("")
        term.wait("message:")
        term.line("")  # empty message: a clear error, nothing sent
        term.wait("the message is empty")
        term.line("hmmm")
        term.line("release-7")
        term.line("")
        term.line("freeze the branch, password=letmein123 is rotated")
        term.wait("sign and send?")
        preview = next(
            row for row in reversed(term.screen().splitlines()) if row.startswith("preview:")
        )
        assert "letmein123" not in preview and "[REDACTED:secret_assignment]" in preview
        assert "SHHH redacted: secret_assignment" in term.screen()
        term.line("y")
        term.wait("as entry")
        await wait_until(lambda: received, timeout=10, message="another agent receives it")
        assert received[0].sender == "dana" and "letmein123" not in received[0].model_dump_json()

        # decisions: open, vote changes the tally and closes it (quorum 1), voting again is refused
        term.line("decide open ship release 7")
        screen = term.wait("opened decision")
        decision_id = screen.split("opened decision ")[-1].split()[0]
        term.line(f"decide vote {decision_id} approve lgtm")
        term.wait("approve 1 reject 0")
        term.line(f"decide vote {decision_id} reject")
        term.wait("is closed")
        term.line("decide list")
        term.wait("closed: approved")
        term.line("ucxl ucxl://any:any@p:t/")
        term.wait("CHORUS_HAP_DHT_URL")
        term.line("web")
        term.wait("web UI")
        term.line("quit")
        term.wait("bye")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", name], check=False)
