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


async def _active(http: httpx.AsyncClient, port: int) -> bool:
    try:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return False  # killed or restarting: not publishing
    return any(line.startswith("paylink_relay_lease_active 1") for line in text.splitlines())


def watch_overlap() -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        rounds = overlaps = 0
        async with httpx.AsyncClient(timeout=1) as http:
            while run.elapsed() < run.scenario.produce_s:
                ports = [METRICS_PORT + 1 + i for i in range(len(run.relays))]
                active = await asyncio.gather(*(_active(http, port) for port in ports))
                rounds += 1
                overlaps += sum(active) > 1
                await asyncio.sleep(0.2)
        run.state["overlap"] = (overlaps, rounds)
        run.chaos["clock skew (relay +90 s, worker -45 s)"] += 1
        run.notes.append(f"both relays active in {overlaps} of {rounds} lease samples")

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


def no_two_active(run: ScenarioRun, obs: Observation) -> list[str]:
    overlaps, rounds = run.state.get("overlap", (0, 0))
    problems = []
    if rounds < 50:
        problems.append(f"only {rounds} lease samples")
    if overlaps:
        problems.append(f"both relays held the lease in {overlaps} of {rounds} samples")
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
