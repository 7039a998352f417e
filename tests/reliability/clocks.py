"""``skewed_clocks``: one relay's clock 90 s ahead, the worker's 45 s behind (Debian's ``faketime``).

The active relay is SIGKILLed twice so the lease passes between the skewed relay and the true one.
A watcher reads both relays' ``paylink_relay_lease_active`` every 0.2 s and counts the rounds in which
both said 1 (two relays publishing at once). Before the lease judged expiry by the store's clock, the
relay ahead took the lease from a holder that kept renewing (tests/integration/test_lease_skew.py).
The worker's skew moves due dates by 45 s (they are dates) and the invariants judge the rest as usual.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.reliability.invariants import Observation
from tests.reliability.process import faketime_available, skewed
from tests.reliability.runner import Chaos, Scenario, ScenarioRun

METRICS_PORT = 19595  # worker :19595, relays :19596 and :19597
AHEAD_S, BEHIND_S = 90, -45


async def _relay_state(http: httpx.AsyncClient, port: int) -> tuple[bool, float]:
    """(holds the lease, results published so far) of the relay whose /metrics is on ``port``."""
    try:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return False, -1.0  # killed or restarting: not publishing
    active, published = False, 0.0
    for line in text.splitlines():
        if line.startswith("paylink_relay_lease_active "):
            active = float(line.split()[1]) == 1.0
        elif line.startswith("paylink_relay_published_total "):
            published = float(line.split()[1])
    return active, published


def watch_overlap() -> Chaos:
    """Every 0.2 s: which relays hold the lease (their gauge) and which published since the last look
    (their counter). ``both_active``: rounds in which two said they hold it; ``both_published``: rounds in
    which two published — the overlap that matters (a stalled holder keeps its gauge at 1 but is fenced)."""

    async def chaos(run: ScenarioRun) -> None:
        metrics_port = run.metrics_port
        assert metrics_port is not None, "the scenario sets metrics_port"
        rounds = both_active = both_published = 0
        last: dict[int, float] = {}
        async with httpx.AsyncClient(timeout=1) as http:
            while run.elapsed() < run.scenario.produce_s:
                ports = [metrics_port + 1 + i for i in range(len(run.relays))]
                states = await asyncio.gather(*(_relay_state(http, port) for port in ports))
                rounds += 1
                both_active += sum(active for active, _ in states) > 1
                grew = [p for p, (_, n) in zip(ports, states, strict=True) if n > last.get(p, n) >= 0]
                both_published += len(grew) > 1
                last = {p: n for p, (_, n) in zip(ports, states, strict=True)}
                await asyncio.sleep(0.2)
        run.state["overlap"] = (both_published, both_active, rounds)
        run.notes.append(
            f"lease samples: two relays published in {both_published} of {rounds} rounds of 0.2 s, "
            f"two said they held the lease in {both_active}"
        )

    return chaos


def relay_handovers(times: int) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        for moment in [0.25 + 0.6 * i / times for i in range(times)]:
            await run.at(moment)
            active = None
            for _ in range(50):  # a relay just restarted may still be taking the lease over
                active = await run.active_relay()
                if active is not None:
                    break
                await asyncio.sleep(0.2)
            if active is None:
                run.notes.append("no active relay found to kill")
                continue
            skew = "skewed" if run.relays.index(active) == 0 else "true-clock"
            run.notes.append(f"SIGKILL the active relay ({skew}) at {run.elapsed():.1f}s")
            run.kill(active)
            await asyncio.sleep(run.settings.relay_lease_s + 1.5)
            run.restart(active)

    return chaos


def no_two_publishing(run: ScenarioRun, obs: Observation) -> list[str]:
    published, _active, rounds = run.state.get("overlap", (0, 0, 0))
    problems = []
    if rounds < 50:
        problems.append(f"only {rounds} lease samples")
    if published:
        problems.append(f"two relays published in {published} of {rounds} rounds")
    return problems


def no_two_active(run: ScenarioRun, obs: Observation) -> list[str]:
    _published, active, rounds = run.state.get("overlap", (0, 0, 0))
    problems = no_two_publishing(run, obs)
    if active:
        problems.append(f"both relays held the lease in {active} of {rounds} samples")
    if run.chaos["relay SIGKILL"] < 2:
        problems.append(f"only {run.chaos['relay SIGKILL']} relay handovers")
    return problems


def skew_scenarios() -> list[Scenario]:
    if not faketime_available():
        print(
            "reliability: !!! faketime is missing: skewed_clocks is NOT run (apt-get install -y faketime) !!!",
            flush=True,
        )
        return []

    async def both(run: ScenarioRun) -> None:
        run.chaos["clock skew (relay +90 s, worker -45 s)"] += 1
        await asyncio.gather(watch_overlap()(run), relay_handovers(2)(run))

    return [
        Scenario(
            "skewed_clocks",
            "one relay's clock 90 s ahead, the worker's 45 s behind; the lease passes between the relays twice",
            requests=200,
            produce_s=30,
            chaos=both,
            wrap={"relay-0": skewed(AHEAD_S), "worker": skewed(BEHIND_S)},
            metrics_port=METRICS_PORT,
            private=True,
            goal=no_two_active,
        )
    ]
