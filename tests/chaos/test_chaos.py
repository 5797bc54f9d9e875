"""Random SIGKILL / SIGSTOP / restarts of services and NATS nodes while agents work.

A 3-node NATS cluster (R3 streams and KV) and the shape the Helm chart ships
(licensing required, three election replicas with real scores, two gateways,
two coordinators, two backbeat replicas, three DHT nodes, HAP) run as real
processes; agents
publish envelopes (directly and through the gateway), create, claim and
complete tasks, and store DHT records, while one random fault at a time hits
a random process. After healing, every invariant of the design must hold.

Longer by hand (the seed makes a failing run repeatable):

    CHORUS_CHAOS_SECONDS=1800 CHORUS_CHAOS_SEED=7 .venv/bin/pytest tests/chaos -s
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import httpx
import pytest

from chorus_cli.testing.chaos import ChaosConstellation, Workload
from chorus_cli.testing.chaos import invariants as inv
from chorus_common.testing import wait_until

SECONDS = float(os.environ.get("CHORUS_CHAOS_SECONDS", "45"))
SEED = int(os.environ.get("CHORUS_CHAOS_SEED", "20261126"))


async def _one_admin(c: ChaosConstellation) -> bool:
    reader = {"Authorization": f"Bearer {c.admin_token}"}
    async with httpx.AsyncClient(timeout=1, headers=reader) as client:
        views = [(await client.get(f"{u}/v1/admin")).json() for u in c.urls("election")]
    admins = {v["admin"] for v in views}
    return len(admins) == 1 and None not in admins and sum(v["is_self"] for v in views) == 1


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
async def test_invariants_hold_under_random_faults(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    c = ChaosConstellation(tmp_path).start()
    workload = Workload(c, rng)
    try:
        await c.wait_ready(90)
        await wait_until(lambda: _one_admin(c), timeout=30, interval=0.2, message="an admin")

        async def inject_faults() -> None:
            await asyncio.sleep(2)
            end = time.monotonic() + SECONDS - 6
            while time.monotonic() < end:
                fault = await c.inject(rng)
                print(f"fault: {fault.action} {fault.target} for {fault.seconds}s", flush=True)
                await asyncio.sleep(rng.uniform(0.5, 1.5))

        await asyncio.gather(workload.run(SECONDS), inject_faults())
        await c.heal(90)
        await wait_until(lambda: _one_admin(c), timeout=30, interval=0.2, message="one admin")
        seen = workload.seen
        print(f"seed {SEED}: {len(c.faults)} faults; {seen.summary()}", flush=True)

        # the workload really worked through the faults, or the invariants prove nothing
        assert len(c.faults) >= SECONDS / 5
        assert len(seen.acked) >= 100 and len(seen.completions) >= 10, seen.summary()
        assert len(seen.dht_written) >= 20 and seen.admin_answers, seen.summary()

        stored = await workload.stored_envelope_ids()
        violations = list(seen.server_errors)  # a fault may make a service unavailable, not broken
        violations += inv.envelopes_once(seen.acked, seen.attempted, stored)
        violations += inv.single_holder_per_term(await workload.tasks_on_board())
        violations += inv.completed_by_one_agent(seen.completions)
        violations += inv.no_overlapping_admin_terms(seen.admin_answers)
        # with real scores the admin changes only when a fault hits it or the bus
        wall_to_mono = time.monotonic() - time.time()
        disruptions = [
            inv.Disruption(f.target, f.at + wall_to_mono, f.at + wall_to_mono + f.seconds)
            for f in c.faults
        ]
        nats_nodes = {s.server_name or "" for s in c.cluster.servers}
        violations += inv.admin_changes_follow_faults(
            seen.admin_answers, disruptions, always_disruptive=nats_nodes
        )

        async def all_readable() -> bool:
            return not inv.records_readable(seen.dht_written, await workload.read_records())

        # repair runs every second after the heal; give it a few rounds before judging
        try:
            await wait_until(all_readable, timeout=20, interval=1.0, message="records readable")
        except TimeoutError:
            violations += inv.records_readable(seen.dht_written, await workload.read_records())
        faults = "\n".join(f"  {f.action} {f.target} {f.seconds}s" for f in c.faults)
        assert not violations, (
            f"seed {SEED}\n" + "\n".join(violations[:50]) + f"\nfaults:\n{faults}"
        )
    finally:
        await workload.close()
        c.stop()
