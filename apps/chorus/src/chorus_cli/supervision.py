"""Keeping `chorus up`'s services running: restart a process that dies, give up on one that keeps dying.

``InstanceRecord`` is the pure part: it is told what happened (started, ready,
not ready, exited) and when, and answers what to do next (nothing, restart,
kill a start that never got ready). ``Supervisor`` is the thin shell that
polls the processes, probes readiness over HTTP and carries those answers out.

Back-off: the first restart waits ``first_delay`` (0.5 s), each further one
twice as long up to ``max_delay`` (30 s); a run that stayed ready for
``stable_after`` (30 s) resets it. An instance is failed, and left down, after
``max_crashes`` (5) exits within ``crash_window`` (60 s), or after
``max_unready_starts`` (5) starts in a row that never got ready (a start not
ready within ``ready_timeout`` is killed and counts as one).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from chorus_common.processes import ServiceProcess


class Phase(StrEnum):
    """What the live table and `chorus status` show for one instance."""

    STARTING = "starting"
    READY = "ready"
    NOT_READY = "not ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


class Action(Enum):
    NONE = "none"
    RESTART = "restart"
    KILL = "kill"


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 0.5
    max_delay: float = 30.0
    stable_after: float = 30.0
    max_crashes: int = 5
    crash_window: float = 60.0
    max_unready_starts: int = 5
    ready_timeout: float = 30.0


def describe_exit(returncode: int | None) -> str:
    """``exit 1``, ``SIGKILL``: how a process ended, as a person says it."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


@dataclass
class InstanceRecord:
    """One instance's run history and the decisions that follow from it; no I/O."""

    name: str
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    phase: Phase = Phase.STARTING
    restarts: int = 0
    last_exit: str | None = None
    #: why it was given up on (only when ``phase`` is FAILED)
    failure: str | None = None
    started_at: float = 0.0
    ready_since: float | None = None
    restart_at: float | None = None
    delay: float = 0.0
    crashes: list[float] = field(default_factory=list)
    unready_starts: int = 0
    _ready_this_run: bool = False

    def __post_init__(self) -> None:
        self.delay = self.policy.first_delay

    def started(self, now: float) -> None:
        self.phase = Phase.STARTING
        self.started_at = now
        self.ready_since = None
        self.restart_at = None
        self._ready_this_run = False

    def restarted(self, now: float) -> None:
        self.restarts += 1
        self.started(now)

    def ready(self, now: float) -> None:
        if self.phase in (Phase.STARTING, Phase.NOT_READY):
            self.phase = Phase.READY
            self.ready_since = now
            self._ready_this_run = True
            self.unready_starts = 0

    def unready(self, now: float) -> None:
        """Running but answering not ready (e.g. NATS is away): shown, never restarted for it."""
        if self.phase is Phase.READY:
            self.phase = Phase.NOT_READY
            self.ready_since = None

    def exited(self, now: float, how: str) -> None:
        """The process ended while it should be running: restart later, or give up."""
        if self.phase in (Phase.FAILED, Phase.STOPPED, Phase.RESTARTING):
            return
        self.last_exit = how
        self.ready_since = None
        self.crashes = [t for t in self.crashes if now - t < self.policy.crash_window] + [now]
        if not self._ready_this_run:
            self.unready_starts += 1
        if len(self.crashes) >= self.policy.max_crashes:
            self._fail(
                f"{len(self.crashes)} exits within {self.policy.crash_window:g}s (last: {how})"
            )
        elif self.unready_starts >= self.policy.max_unready_starts:
            self._fail(f"never ready in {self.unready_starts} starts (last: {how})")
        else:
            self.phase = Phase.RESTARTING
            self.restart_at = now + self.delay
            self.delay = min(self.delay * 2, self.policy.max_delay)

    def _fail(self, why: str) -> None:
        self.phase = Phase.FAILED
        self.failure = why
        self.restart_at = None

    def stopped(self) -> None:
        self.phase = Phase.STOPPED
        self.restart_at = None

    def next_action(self, now: float) -> Action:
        if self.phase is Phase.RESTARTING and self.restart_at is not None:
            return Action.RESTART if now >= self.restart_at else Action.NONE
        if (
            self.phase is Phase.READY
            and self.ready_since is not None
            and now - self.ready_since >= self.policy.stable_after
        ):
            self.delay = self.policy.first_delay
        if (
            self.phase is Phase.STARTING
            and not self._ready_this_run
            and now - self.started_at >= self.policy.ready_timeout
        ):
            return Action.KILL
        return Action.NONE

    @property
    def settled(self) -> bool:
        """Ready, or given up on: what the start-up summary waits for."""
        return self.phase in (Phase.READY, Phase.FAILED)


@dataclass(frozen=True)
class Event:
    """Something the user should read about: an exit, a restart, a failure."""

    instance: str
    text: str
    failed: bool = False


#: how often an instance already ready is asked again (one still starting: every tick)
READY_RECHECK_SECONDS = 2.0


class Supervisor:
    """Polls the processes of a constellation and carries out their records' decisions.

    Call ``tick()`` every fraction of a second from one thread; ``on_change`` runs
    whenever a phase, pid or restart count changed (`chorus up` rewrites up.json).
    """

    def __init__(
        self,
        processes: Iterable[ServiceProcess],
        policy: RestartPolicy | None = None,
        *,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.processes = {p.instance: p for p in processes}
        self.clock = clock
        now = clock()
        self.records: dict[str, InstanceRecord] = {}
        for name, proc in self.processes.items():
            record = InstanceRecord(name, self.policy)
            record.started(proc.started_at or now)
            self.records[name] = record
        self.on_change = on_change
        self._probed: dict[str, float] = {}

    def tick(self) -> list[Event]:
        events: list[Event] = []
        changed = False
        for name, proc in self.processes.items():
            record = self.records[name]
            before = (record.phase, record.restarts, proc.proc.pid if proc.proc else None)
            events += self._step(record, proc, self.clock())
            changed |= before != (
                record.phase,
                record.restarts,
                proc.proc.pid if proc.proc else None,
            )
        if changed and self.on_change is not None:
            self.on_change()
        return events

    def _step(self, record: InstanceRecord, proc: ServiceProcess, now: float) -> list[Event]:
        if record.phase in (Phase.FAILED, Phase.STOPPED):
            return []
        if record.phase is Phase.RESTARTING:
            if record.next_action(now) is Action.RESTART:
                proc.start()
                record.restarted(self.clock())
                return [Event(record.name, f"{record.name} restarted (restart {record.restarts})")]
            return []
        if not proc.running:
            record.exited(now, describe_exit(proc.exit_code))
            return [self._exit_event(record, proc)]
        if record.phase is not Phase.READY or now - self._probed.get(record.name, 0.0) >= (
            READY_RECHECK_SECONDS
        ):
            self._probed[record.name] = now
            if proc.is_ready(timeout=0.5):
                record.ready(self.clock())
            else:
                record.unready(self.clock())
        if record.next_action(self.clock()) is Action.KILL:
            proc.kill()
            record.exited(self.clock(), f"not ready in {self.policy.ready_timeout:g}s")
            return [self._exit_event(record, proc)]
        return []

    def _exit_event(self, record: InstanceRecord, proc: ServiceProcess) -> Event:
        if record.phase is Phase.FAILED:
            return Event(
                record.name,
                f"{record.name} failed: {record.failure}; left stopped. "
                f"Log {proc.log_path}:\n{proc.log_tail(1500)}",
                failed=True,
            )
        wait = (record.restart_at or 0.0) - self.clock()
        return Event(
            record.name,
            f"{record.name} exited ({record.last_exit}); restarting in {max(wait, 0.0):.1f}s",
        )

    def stop(self) -> None:
        """No more restarts: the constellation is being stopped on purpose."""
        for record in self.records.values():
            if record.phase is not Phase.FAILED:
                record.stopped()

    @property
    def settled(self) -> bool:
        return all(r.settled for r in self.records.values())

    def state(self, instance: str) -> dict[str, object]:
        """What up.json keeps of one instance."""
        record = self.records[instance]
        return {
            "state": record.phase.value,
            "restarts": record.restarts,
            "last_exit": record.last_exit,
            "failure": record.failure,
        }
