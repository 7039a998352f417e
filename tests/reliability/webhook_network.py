"""``webhook_network``: network faults on the webhook path, Stripe → Toxiproxy → ``paylink webhooks``.

The emulator's Connect endpoint points at the run's ``webhooks`` proxy (``routes.Routes``); links are
created and moved through their lifecycle in Stripe as in ``webhook_faults`` (``lifecycle.py``: the same
plans, the same clock jump past the due dates), but the trouble is the network between the emulator
and paylink, in rounds until every plan has played:

- latency spikes, some past the emulator's delivery timeout (paylink handled the event, Stripe did not
  hear it: delivered again);
- a stall: a ``timeout`` toxic longer than the delivery timeout. Each attempt is its own connection
  (the emulator opens one per attempt), so the toxic dropping what it holds and closing the connection
  once the emulator has given up is what a stall shows an HTTP client: no answer, then a dead
  connection. Downstream the request arrived and was handled; upstream it never arrived. (``bandwidth``
  with rate 0 is no stall: Toxiproxy 2.5 reads 0 as unlimited.)
- a reset after the request was sent (``reset_peer`` on the answer's first bytes): handled, unanswered;
- answers cut after a few bytes (``limit_data``): handled, half answered.

Then every toxic goes; the emulator's retries (short schedule, as in ``webhook_faults``) deliver what
the faults lost, and ``paylink reconcile`` runs last (``lifecycle.finish``) and is expected to recover
nothing: a delivery that failed every attempt would show there. The ``lifecycle_*`` invariants judge the
events; ``goal`` checks the faults went in and deliveries really failed and were retried.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from tests.integration.harness import STRIPE_HEADERS
from tests.reliability import lifecycle
from tests.reliability.invariants import Observation
from tests.reliability.runner import Scenario, ScenarioRun
from tests.reliability.toxiproxy import Stream

PROXY = "webhooks"
DELIVERY_TIMEOUT_S = 2  # the emulator's, for the run: a stall or a latency spike outlasts it
STALL_MS = 2 * DELIVERY_TIMEOUT_S * 1000  # the stalled connection is closed only after the emulator gave up
# (toxic, stream, toxicity, attributes, seconds): half the connections of a phase meet the fault, so
# deliveries also succeed meanwhile and the retries land in later phases as well as after the heal. A
# stall lasts twice the delivery timeout: removing the toxic closes the connections it holds, and an
# attempt cut that way ends as a closed connection rather than a timeout.
PHASES: list[tuple[str, Stream, float, dict[str, int], float]] = [
    ("latency", "downstream", 0.5, {"latency": 1500, "jitter": 1000}, 2.0),  # spikes: some past the timeout
    ("timeout", "downstream", 0.5, {"timeout": STALL_MS}, 2.0 * DELIVERY_TIMEOUT_S),  # stall after the request
    ("reset_peer", "downstream", 0.5, {"timeout": 0}, 2.0),  # reset once the request was sent and handled
    ("limit_data", "downstream", 0.5, {"bytes": 40}, 2.0),  # the answer cut inside its headers
    ("timeout", "upstream", 0.5, {"timeout": STALL_MS}, 2.0 * DELIVERY_TIMEOUT_S),  # stall before the request
]
ROUNDS = 2  # at least; more while plays go on


async def _faults(run: ScenarioRun, stop: asyncio.Event) -> None:
    """The phases in turn from early in the window, at least ``ROUNDS`` times, until the plays end."""
    assert run.toxi is not None, "webhook_network is proxied"
    toxi = run.toxi
    await run.at(0.15)
    rounds = 0
    while rounds < ROUNDS or not stop.is_set():
        for kind, stream, toxicity, attributes, seconds in PHASES:
            toxic = await toxi.add_toxic(PROXY, kind, stream, toxicity=toxicity, **attributes)
            try:
                await asyncio.sleep(seconds)
            finally:
                await toxi.remove_toxic(PROXY, toxic)
            await asyncio.sleep(0.5)
        rounds += 1
    run.notes.append(f"{rounds} round(s) of webhook network faults, healed at {run.elapsed():.1f}s")


async def drive(run: ScenarioRun) -> None:
    api = httpx.AsyncClient(base_url=run.services.stripe_base, headers=STRIPE_HEADERS, timeout=30)
    driver = lifecycle.Driver(run, api)
    run.state["lifecycle"] = driver
    config = {"webhook_retry_delays_s": lifecycle.RETRY_DELAYS_S, "webhook_timeout_s": DELIVERY_TIMEOUT_S}
    (await api.post("/_emulator/config", json=config)).raise_for_status()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(lifecycle.play_links(driver, stop))
        group.create_task(_faults(run, stop))


def _attempt_errors(deliveries: list[dict[str, Any]]) -> Counter[str]:
    """What the failed attempts met, by the emulator's record (a timeout, or the httpx error's kind)."""
    seen: Counter[str] = Counter()
    for delivery in deliveries:
        for attempt in delivery["attempts"]:
            error = attempt["error"]
            if error:
                seen["timed out" if error == "timeout" else str(error).split(":", 1)[0]] += 1
    return seen


async def finish(run: ScenarioRun) -> None:
    await lifecycle.finish(run)  # waits out the deliveries, runs reconcile, counts
    async with httpx.AsyncClient(base_url=run.services.stripe_base, timeout=30) as api:
        deliveries = (await api.get("/_emulator/webhook_deliveries")).raise_for_status().json()["data"]
    errors = _attempt_errors(deliveries)
    run.chaos["webhook attempts timed out"] += errors.pop("timed out", 0)
    run.chaos["webhook attempts reset or cut"] += sum(errors.values())
    run.chaos["webhook deliveries failed"] += sum(1 for d in deliveries if d["status"] == "failed")
    # An event paylink handled whose answer the fault lost comes again: paylink logs it as a duplicate.
    logs = [path.read_text(errors="replace") for path in run.log_dir.glob("webhooks-*.log")]
    run.chaos["webhook deliveries handled twice"] += sum(log.count('"webhook duplicate"') for log in logs)
    run.notes.append(f"failed attempts by error: {dict(sorted(_attempt_errors(deliveries).items()))}")


def goal(run: ScenarioRun, obs: Observation) -> list[str]:
    driver = run.state.get("lifecycle")
    assert isinstance(driver, lifecycle.Driver)
    problems = []
    fired = run.toxi.fired if run.toxi is not None else {}
    for kind, *_ in PHASES:
        if not any(key.startswith(f"{PROXY} {kind} ") for key in fired):
            problems.append(f"no {kind} toxic went in on the webhooks proxy")
    wanted = {
        "webhook attempts timed out": 1,
        "webhook attempts reset or cut": 3,
        "webhook deliveries retried": 5,
        "webhook deliveries handled twice": 1,  # the answer lost after paylink acted on the event
    }
    problems += lifecycle.played_out(run, driver, obs, wanted)
    distinct = {str(event.get("event_id")): event for event in obs.lifecycle}
    sources = Counter(str(event.get("source")) for event in distinct.values())
    run.notes.append(
        f"lifecycle events: {len(distinct)} distinct (by source {dict(sorted(sources.items()))}), "
        f"{obs.lifecycle_duplicates} re-deliveries"
    )
    return problems


def webhook_network_scenario() -> Scenario:
    return Scenario(
        "webhook_network",
        "Stripe's webhook deliveries to paylink meet latency spikes, stalls, resets after the request "
        "and cut answers (Toxiproxy); the emulator's retries cover them",
        requests=50,
        produce_s=15,
        chaos=drive,
        finish=finish,
        goal=goal,
        webhooks=True,
        proxied=True,
        private=True,  # moves the emulator's clock and sets its webhook retry schedule and timeout
        weights={"created": 120, "duplicate": 4},
    )
