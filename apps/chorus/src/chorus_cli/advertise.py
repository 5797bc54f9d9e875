"""The mDNS advertisement of `chorus up`'s bus, in a process of its own.

zeroconf runs threads; were they in `chorus up` itself, services restarted after
a crash could no longer be forked from it (a lock held by another thread stays
locked in the child), so the advertisement lives in this small child process.

    python -m chorus_cli.advertise NATS_URL PORT   # prints one line: "advertised" or why not
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from dataclasses import dataclass

from chorus_common.processes import die_with_parent


@dataclass
class BusAdvertisement:
    """The running advertiser; ``close()`` withdraws the advertisement."""

    proc: subprocess.Popen[str]
    answer: str

    @property
    def advertised(self) -> bool:
        return self.answer == "advertised"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_advertising(nats_url: str, port: int, timeout: float = 5.0) -> BusAdvertisement:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chorus_cli.advertise", nats_url, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    answer = proc.stdout.readline().strip() if ready else f"no answer in {timeout:g}s"
    return BusAdvertisement(proc, answer or f"advertiser exited ({proc.poll()})")


def main() -> None:
    from chorus_common.discovery import advertise_bus_blocking

    nats_url, port = sys.argv[1], int(sys.argv[2])
    try:
        zc = advertise_bus_blocking(nats_url, "local", port)
    except Exception as exc:  # no multicast here: say so, the constellation works without it
        print(f"unavailable: {exc}", flush=True)
        return
    print("advertised", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    zc.close()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    main()
