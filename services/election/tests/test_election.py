"""Real election processes on a real nats-server: start, kill, pause, bus restart, manual."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import httpx
import pytest

from .conftest import ADMIN, ElectionGroup, wait


def assert_no_overlap(log: dict[str, list[tuple[int, float]]]) -> None:
    """No two participants ever acted as admin in overlapping intervals (from their own logs)."""
    spans = []
    for node, entries in log.items():
        by_term: dict[int, list[float]] = {}
        for term, at in entries:
            by_term.setdefault(term, []).append(at)
        for term, times in by_term.items():
            spans.append((min(times), max(times), node, term))
    spans.sort()
    for (_s1, e1, n1, t1), (s2, _e2, n2, t2) in itertools.pairwise(spans):
        assert e1 < s2, f"{n1} (term {t1}) acted until {e1:.3f}, {n2} (term {t2}) from {s2:.3f}"
    terms = [t for _, _, _, t in spans]
    assert len(terms) == len(set(terms)), "a term was used by two participants"


@pytest.mark.slow
def test_election_lifecycle(election_group: ElectionGroup, nats_server: Any) -> None:
    g = election_group
    for node, uptime in (("e1", 0.2), ("e2", 0.9), ("e3", 0.5)):
        g.start(node, uptime=uptime)
    admin, term = g.wait_admin()
    assert admin == "e2"  # the highest score wins
    view = g.view("e1")
    assert view is not None
    wait(lambda: (g.view("e1") or {}).get("admin") == "e2", 5, "followers see the admin")
    assert g.view("e1")["score"]["components"]["uptime"] == 0.9  # type: ignore[index]
    history = httpx.get(f"{g.procs['e2'].url}/v1/elections").json()["elections"]
    assert history and history[0]["winner"] == "e2"
    assert history[0]["trigger"] in ("no_admin_discovered", "admin_heartbeat_timeout")

    # manual trigger: a new term, the best candidate wins again
    resp = httpx.post(f"{g.procs['e1'].url}/v1/elections", headers=ADMIN)
    assert resp.status_code == 202
    admin, term2 = wait(lambda: _admin_with_term_above(g, term), 10, "manual election")
    assert admin == "e2" and term2 > term

    # SIGKILL the admin: a new admin with a higher term
    g.procs["e2"].kill()
    admin, term3 = g.wait_admin(not_in=("e2",))
    assert admin == "e3" and term3 > term2

    # SIGSTOP the admin past its lease: another takes over; resumed, the old one steps down
    g.procs["e3"].pause()
    admin, _term4 = wait(lambda: _admin_with_term_above(g, term3, skip=("e3",)), 15, "takeover")
    assert admin == "e1"
    g.procs["e3"].resume()
    wait(lambda: set(g.admins()) == {"e1"}, 10, "the resumed admin stepped down")

    # restart nats-server (SIGKILL): one admin again
    nats_server.kill()
    time.sleep(0.5)
    nats_server.start()
    g.wait_admin(timeout=20)
    time.sleep(1.0)
    g.wait_admin()
    assert_no_overlap(g.action_log())


def _admin_with_term_above(
    g: ElectionGroup, term: int, skip: tuple[str, ...] = ()
) -> tuple[str, int] | None:
    admins = {n: t for n, t in g.admins().items() if n not in skip and t is not None and t > term}
    if len(admins) == 1:
        return next(iter(admins.items()))
    return None


def test_stepdown_needs_the_admin_and_a_token(election_group: ElectionGroup) -> None:
    g = election_group
    g.start("s1", uptime=0.9)
    g.start("s2", uptime=0.1)
    admin, term = g.wait_admin()
    other = "s2" if admin == "s1" else "s1"
    refused = httpx.post(f"{g.procs[other].url}/v1/stepdown", headers=ADMIN)
    assert refused.status_code == 409 and admin in refused.json()["detail"]
    assert httpx.post(f"{g.procs[admin].url}/v1/stepdown").status_code == 401
    ok = httpx.post(f"{g.procs[admin].url}/v1/stepdown", headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["term"] == term
    new_admin, new_term = wait(lambda: _admin_with_term_above(g, term), 10, "handover")
    assert new_term > term
    assert new_admin in ("s1", "s2")


@pytest.mark.slow
def test_no_two_admins_act_at_once_across_a_hundred_random_faults(
    election_group: ElectionGroup, nats_server: Any
) -> None:
    g = election_group
    nodes = ["f1", "f2", "f3", "f4"]
    for i, node in enumerate(nodes):
        g.start(node, uptime=0.2 + 0.2 * i)
    g.wait_admin(timeout=20)
    rng = random.Random(20261124)
    paused: set[str] = set()
    killed: set[str] = set()
    faults = 0
    while faults < 100:
        kind = rng.choices(["kill", "pause", "resume", "restart", "bus"], [3, 3, 3, 3, 1])[0]
        node = rng.choice(nodes)
        if kind == "kill" and node not in killed and len(killed) < 2:
            g.procs[node].kill()
            killed.add(node)
        elif kind == "pause" and node not in paused | killed and len(paused) < 2:
            g.procs[node].pause()
            paused.add(node)
        elif kind == "resume" and paused:
            victim = rng.choice(sorted(paused))
            g.procs[victim].resume()
            paused.discard(victim)
        elif kind == "restart" and killed:
            victim = rng.choice(sorted(killed))
            g.start(victim, uptime=0.2 + 0.2 * nodes.index(victim))
            killed.discard(victim)
        elif kind == "bus":
            nats_server.kill()
            time.sleep(rng.uniform(0.1, 0.5))
            nats_server.start()
        else:
            continue
        faults += 1
        time.sleep(rng.uniform(0.05, 0.6))
    for node in sorted(paused):
        g.procs[node].resume()
    for node in sorted(killed):
        g.start(node, uptime=0.2 + 0.2 * nodes.index(node))
    g.wait_admin(timeout=30)
    log = g.action_log()
    assert sum(len(v) for v in log.values()) > 20  # admins really acted along the way
    assert_no_overlap(log)
