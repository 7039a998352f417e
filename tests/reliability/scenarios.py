"""The scenarios: each a stream of mixed requests plus one kind of trouble, at full or reduced size.

``scenarios(reduced=False)`` is the full suite (``make reliability``, on a private stack);
``scenarios(reduced=True)`` the few that fit ``make test``: they restart no service and change no
emulator-wide setting (every Stripe fault is scoped to the scenario's own connected accounts), so they
can share the development stack with the other tests.

``webhook_faults`` (full suite only) is about what happens after ``PaymentLinkCreated``: it also runs
``paylink webhooks`` behind a Connect endpoint on the emulator, moves the links' invoices through
their lifecycle in Stripe under webhook delivery faults and webhooks SIGKILLs, runs ``paylink
reconcile``, and is judged by the ``lifecycle_*`` invariants (``tests/reliability/lifecycle.py``).
``webhook_network`` (also full suite only) drives the same lifecycle with network faults between the
emulator and ``paylink webhooks`` instead (``tests/reliability/webhook_network.py``).

``worker_sigkill``, ``stripe_storm`` and ``chaos_monkey`` also mix ``PaymentLinkCancelRequested`` into
their stream (``workload.mix_cancels``): cancels of created links (some right behind the request, while
the link is still being made), duplicates, second cancels, another tenant's cancels, cancels of failed
requests, and, mid-run, cancels of links just paid on the emulator's hosted page; the runner replays the
retryable ones, ``paylink reconcile`` publishes the payments, and the ``cancel_*``/``void_once``
invariants judge them.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from pydantic import SecretStr

from consumer.runtime.settings import LOCAL_STRIPE_TEST_KEY
from tests.reliability import lifecycle
from tests.reliability.clocks import skew_scenarios
from tests.reliability.hostile import hostile_scenario
from tests.reliability.invariants import Observation
from tests.reliability.network import network_scenarios
from tests.reliability.runner import Chaos, Scenario, ScenarioRun
from tests.reliability.webhook_network import webhook_network_scenario
from tests.reliability.workload import Sent, World, hostile_fixed, hostile_random_bytes, hypothesis_messages


def _moments(rng: random.Random, times: int, start: float = 0.1, stop: float = 1.1) -> list[float]:
    """``times`` random moments (fractions of the production window), at least a little apart."""
    span = (stop - start) / times
    return [start + i * span + rng.uniform(0.1, 0.9) * span for i in range(times)]


# A live-looking key the emulator refuses (401): the suite checks it never shows in any output.
BAD_KEY = "sk_live_" + "51Hx" + "9f" * 20


# --- chaos -----------------------------------------------------------------------------------------


# While a worker kill waits for a saga mid-way, Stripe's invoice calls answer this late (a few of them):
# a saga the worker starts then stays in flight long enough to be seen, however fast the machine.
KILL_WINDOW_LATENCY = {"path": "/v1/invoices", "method": "POST", "latency_ms": 1500, "count": 4}
MID_SAGA_WAIT_S = 60.0


async def _sagas_in_flight(run: ScenarioRun) -> int:
    """The next instant with sagas in flight, within ``MID_SAGA_WAIT_S`` (0 or -1 when none came). After an
    earlier kill the group waits out the dead member's session before anything runs again; on a fresh
    broker the first join can take as long. CI once saw no saga in 2 x 15 s of sampling every 0.15 s."""
    await run.add_fault(dict(KILL_WINDOW_LATENCY))
    deadline = asyncio.get_running_loop().time() + MID_SAGA_WAIT_S
    in_flight = await run.running_sagas()
    while in_flight <= 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        in_flight = await run.running_sagas()
    return in_flight


def worker_kills(times: int) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        for moment in _moments(run.rng, times, stop=0.9):  # within the production window: sagas to catch
            await run.at(moment)
            in_flight = await _sagas_in_flight(run)
            worker = next(w for w in run.workers if w.alive)
            run.kill(worker)
            if in_flight > 0:
                run.chaos["worker SIGKILL mid-saga"] += 1
            run.notes.append(f"worker SIGKILLed at {run.elapsed():.1f}s with {in_flight} saga(s) mid-way")
            await asyncio.sleep(run.rng.uniform(0.0, 1.5))
            run.restart(worker)

    return chaos


def relay_kills(times: int) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        for moment in _moments(run.rng, times):
            await run.at(moment)
            active = await run.active_relay()
            if active is None:
                run.notes.append("no active relay found to kill")
                continue
            run.kill(active)
            # Long enough for the lease to lapse: the standby must take over.
            await asyncio.sleep(run.settings.relay_lease_s + run.rng.uniform(0.5, 2.0))
            run.restart(active)

    return chaos


async def rebalance(run: ScenarioRun) -> None:
    """A second worker joins the group, the first leaves (SIGTERM) and comes back, the second is killed."""
    await run.at(0.2)
    second = run.start_worker()
    run.chaos["worker joined"] += 1
    await run.at(0.45)
    await run.until_started(run.workers[0])  # a SIGTERM before its handlers are in place is no drain
    await run.terminate(run.workers[0])
    await run.at(0.65)
    run.restart(run.workers[0])
    run.chaos["worker joined"] += 1
    await run.at(0.85)
    await run.until_started(second)
    run.kill(second)
    await asyncio.sleep(1.0)
    run.restart(second)


def zombie_worker(times: int, seconds: float) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        for moment in _moments(run.rng, times, 0.15, 0.8):
            await run.at(moment)
            in_flight = await run.running_sagas()
            await run.freeze(run.workers[0], seconds)
            run.notes.append(f"worker frozen for {seconds:.0f}s with {in_flight} saga(s) in flight")

    return chaos


def service_restarts(service: str, moments: list[float], downtime_s: float = 1.0) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        for moment in moments:
            await run.at(moment)
            await run.restart_service(service, downtime_s)

    return chaos


def stripe_storm(private: bool) -> Chaos:
    """500s (before and after execution), connection resets, latency past the client timeout, 429s,
    and one short outage of invoice creation on one account that outlasts the retries."""

    async def chaos(run: ScenarioRun) -> None:
        accounts = [run.world.a.stripe_account, run.world.b.stripe_account]
        storm: list[dict[str, Any]] = [
            {"path": "/v1", "method": "POST", "status": 500, "rate": 0.10},
            {"path": "/v1", "method": "POST", "status": 500, "rate": 0.05, "phase": "after"},
            {"path": "/v1", "status": 0, "rate": 0.04},
            {"path": "/v1/customers/search", "status": 503, "rate": 0.10},
            {"path": "/v1", "latency_ms": int(run.settings.stripe_timeout_s * 1000 * 2.5), "rate": 0.03},
            {"path": "/v1", "method": "POST", "status": 429, "rate": 0.03},
        ]
        for spec in storm:
            for account in accounts:
                await run.add_fault({**spec, "account": account})
        limited_before = await run.stripe_counter("rate_limited") if private else 0
        if private:
            # Search is eventually consistent on Stripe: new customers stay invisible to it for a while.
            await run.stripe_config(search_visibility_delay_ms=2000)
            # The emulator answers 429 above Stripe's test-mode limit per account; paylink's own limiter is
            # set to the live-mode limit (100/s), as in production, so the 429s really come.
            await run.stripe_config(rate_limit_per_account=25)
        await run.at(0.4)
        await run.add_fault(
            {"path": "/v1/invoices", "method": "POST", "status": 500, "count": 60, "account": accounts[1]}
        )
        run.chaos["outage burst"] += 1
        await run.at(0.9)
        if private:
            await run.stripe_config(rate_limit_per_account=0, search_visibility_delay_ms=0)
            run.chaos["429 rate-limited"] += await run.stripe_counter("rate_limited") - limited_before

    return chaos


async def shortener_down(run: ScenarioRun) -> None:
    await run.at(0.25)
    assert run.stack is not None
    await asyncio.to_thread(run.stack.down, "shortener-emulator")
    run.chaos["shortener down"] += 1
    await run.at(0.75)
    await asyncio.to_thread(run.stack.up, "shortener-emulator")


def mixed(*parts: Chaos) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        await asyncio.gather(*(part(run) for part in parts))

    return chaos


# --- hostile input ---------------------------------------------------------------------------------


def hostile_input(world: World, rng: random.Random, count: int) -> list[Sent]:
    fixed = hostile_fixed(world, rng)
    return (
        fixed
        + hostile_random_bytes(rng, count // 3)
        + hypothesis_messages(world, count - count // 3, rng.randrange(1 << 30))
    )


LIGHT = {"tombstone", "invalid_utf8_in_json", "deep_object", "one_mib", "surrogates", "huge_array", "wrong_types"}


def hostile_light(world: World, rng: random.Random, count: int) -> list[Sent]:
    """A few of each kind: the hand-made shapes that found bugs, random bytes, hypothesis examples."""
    fixed = [sent for sent in hostile_fixed(world, rng) if sent.label in LIGHT]
    return fixed + hostile_random_bytes(rng, 3) + hypothesis_messages(world, count, rng.randrange(1 << 30))


# --- goals: the chaos did what it meant to ---------------------------------------------------------


def chaos_at_least(**minimum: int) -> Any:
    def goal(run: ScenarioRun, obs: Observation) -> list[str]:
        problems = []
        for name, count in minimum.items():
            key = name.replace("_", " ").replace("mid saga", "mid-saga")
            if run.chaos[key] < count:
                problems.append(f"only {run.chaos[key]} x {key} (wanted >= {count})")
        return problems

    return goal


def purge_ran(run: ScenarioRun, obs: Observation) -> list[str]:
    purged = obs.extra.get("outbox_purged", 0)
    return [] if purged > 0 else ["the outbox purge never ran (no published entry was purged)"]


def long_urls_used(run: ScenarioRun, obs: Observation) -> list[str]:
    fallbacks = sum(
        1
        for saga in obs.sagas.values()
        if (saga.get("result") or {}).get("event_type") == "PaymentLinkCreated" and not saga["result"]["short_url"]
    )
    run.notes.append(f"{fallbacks} link(s) fell back to the long URL")
    return [] if fallbacks else ["no link fell back to the long URL while the shortener was down"]


def hostile_seen(run: ScenarioRun, obs: Observation) -> list[str]:
    bad = [s for s in run.sent if not s.valid]
    return [] if len(bad) >= 20 else [f"only {len(bad)} invalid messages were sent"]


def everything_replayed(run: ScenarioRun, obs: Observation) -> list[str]:
    reached_stripe = [s for s in obs.sagas.values() if s.get("attempt", 1) > 1]
    return [] if len(reached_stripe) >= 10 else [f"only {len(reached_stripe)} request(s) needed the replay"]


def retries_mattered(run: ScenarioRun, obs: Observation) -> list[str]:
    problems = []
    if run.chaos["faults fired"] < 20:
        problems.append(f"only {run.chaos['faults fired']} Stripe faults fired")
    return problems


async def reconcile(run: ScenarioRun) -> None:
    """``paylink reconcile``: links paid on the hosted page (no webhooks here) get their PaymentLinkPaid."""
    code, output = await run.run_command("reconcile", "--since", "1h")
    if code != 0:
        run.notes.append(f"paylink reconcile exited {code}: {output[-200:]}")


def cancels_exercised(run: ScenarioRun, obs: Observation) -> list[str]:
    """Every kind of cancel outcome the mix aims at really happened."""
    seen: Counter[str] = Counter()
    for cancel in obs.cancels.values():
        result = cancel.get("result") or {}
        seen["voided" if result.get("event_type") == "PaymentLinkVoided" else str(result.get("reason"))] += 1
    wanted = ["voided", "payment_link_not_found", "not_created", "already_paid", "already_void"]
    return [f"no cancel ended {kind}" for kind in wanted if not seen[kind]]


def all_goals(*goals: Any) -> Any:
    def goal(run: ScenarioRun, obs: Observation) -> list[str]:
        return [problem for part in goals for problem in part(run, obs)]

    return goal


# --- the suite -------------------------------------------------------------------------------------


def scenarios(reduced: bool = False) -> list[Scenario]:
    if reduced:
        return [
            Scenario(
                "worker_and_relay_kills",
                "SIGKILL the worker twice and the active relay once, with hostile messages interleaved",
                requests=70,
                produce_s=8,
                chaos=mixed(worker_kills(2), relay_kills(1)),
                hostile=hostile_light,
                hostile_count=12,
                goal=chaos_at_least(worker_SIGKILL=2, worker_SIGKILL_mid_saga=1, relay_SIGKILL=1),
                weights={"cross_tenant": 6, "hostile_contact": 6},
            ),
            Scenario(
                "rebalance",
                "a second worker joins, the first leaves and rejoins, the second is killed",
                requests=60,
                produce_s=8,
                chaos=rebalance,
                goal=chaos_at_least(worker_joined=2, worker_SIGTERM=1, worker_SIGKILL=1),
            ),
            Scenario(
                "stripe_faults",
                "500s, lost responses, resets, timeouts, 429s and an outage burst on the tenants' accounts",
                requests=50,
                produce_s=6,
                chaos=stripe_storm(private=False),
                settings={"stripe_timeout_s": 0.6},
                goal=retries_mattered,
            ),
        ]
    return [
        Scenario(
            "worker_sigkill",
            "SIGKILL the worker at random moments, five times",
            requests=300,
            produce_s=30,
            chaos=worker_kills(5),
            goal=all_goals(chaos_at_least(worker_SIGKILL=5, worker_SIGKILL_mid_saga=3), cancels_exercised),
            stripe_config={"latency_ms": 25},  # longer sagas: the kills land between their steps
            cancels=50,
            paid_cancels=6,
            finish=reconcile,
        ),
        Scenario(
            "relay_sigkill",
            "SIGKILL the active relay (of two) three times; the standby must take over",
            requests=250,
            produce_s=25,
            chaos=relay_kills(3),
            goal=chaos_at_least(relay_SIGKILL=3),
        ),
        Scenario(
            "rebalance",
            "a second worker joins, the first leaves and rejoins, the second is killed",
            requests=300,
            produce_s=30,
            chaos=rebalance,
            goal=chaos_at_least(worker_joined=2, worker_SIGTERM=1, worker_SIGKILL=1),
        ),
        Scenario(
            "zombie_worker",
            "one of two workers freezes (SIGSTOP) past its session, its partitions move, then it resumes",
            requests=300,
            produce_s=40,
            workers=2,
            chaos=zombie_worker(2, 14.0),
            stripe_config={"latency_ms": 40},
            goal=chaos_at_least(worker_SIGSTOP=2),
        ),
        Scenario(
            "kafka_restart",
            "restart the Kafka broker twice mid-run",
            requests=250,
            produce_s=30,
            chaos=service_restarts("kafka", [0.3, 0.75], downtime_s=2.0),
            private=True,
            goal=chaos_at_least(kafka_restart=2),
        ),
        Scenario(
            "kafka_outage",
            "the Kafka broker is down for 50 s mid-run (longer than the clients' request timeouts)",
            requests=150,
            produce_s=20,
            chaos=service_restarts("kafka", [0.4], downtime_s=50.0),
            private=True,
            goal=chaos_at_least(kafka_restart=1),
        ),
        Scenario(
            "ferretdb_restart",
            "restart FerretDB (the store) twice mid-run",
            requests=250,
            produce_s=30,
            chaos=service_restarts("ferretdb", [0.3, 0.75], downtime_s=2.0),
            private=True,
            goal=chaos_at_least(ferretdb_restart=2),
        ),
        Scenario(
            "ferretdb_outage",
            "FerretDB is down for 40 s mid-run (longer than the driver's server selection timeout)",
            requests=150,
            produce_s=20,
            chaos=service_restarts("ferretdb", [0.4], downtime_s=40.0),
            private=True,
            goal=chaos_at_least(ferretdb_restart=1),
        ),
        Scenario(
            "stripe_storm",
            "Stripe fault storm: 500s, lost responses, resets, timeouts, 429s (rate limit), an outage burst",
            requests=300,
            produce_s=30,
            chaos=stripe_storm(private=True),
            settings={"stripe_timeout_s": 0.6},
            private=True,
            goal=all_goals(retries_mattered, cancels_exercised),
            cancels=50,
            paid_cancels=6,
            finish=reconcile,
        ),
        Scenario(
            "shortener_down",
            "the shortener is down for half the run",
            requests=200,
            produce_s=20,
            chaos=shortener_down,
            settings={"shortener_timeout_s": 0.5},
            private=True,
            goal=long_urls_used,
        ),
        Scenario(
            "outbox_purge",
            "a long, slower run with 2 s retention: the purge runs while results keep flowing",
            requests=250,
            produce_s=45,
            chaos=worker_kills(2),
            settings={"outbox_retention_s": 2.0, "outbox_purge_interval_s": 1.0},
            goal=purge_ran,
            weights={"duplicate": 8},
        ),
        Scenario(
            "chaos_monkey",
            "all at once, two workers: worker and relay kills, a broker and a store restart, a Stripe storm",
            requests=400,
            produce_s=60,
            workers=2,
            chaos=mixed(
                worker_kills(3),
                relay_kills(2),
                service_restarts("kafka", [0.45], downtime_s=1.0),
                service_restarts("ferretdb", [0.8], downtime_s=1.0),
                stripe_storm(private=True),
            ),
            settings={"stripe_timeout_s": 0.6},
            private=True,
            goal=all_goals(
                chaos_at_least(worker_SIGKILL=3, relay_SIGKILL=2, kafka_restart=1, ferretdb_restart=1),
                cancels_exercised,
            ),
            cancels=60,
            paid_cancels=6,
            finish=reconcile,
        ),
        Scenario(
            "hostile_input",
            "hypothesis-generated, random-byte, malformed, huge (1 MiB) and invalid UTF-8 messages among valid ones",
            requests=200,
            produce_s=20,
            hostile=hostile_input,
            hostile_count=150,
            goal=hostile_seen,
        ),
        Scenario(
            "bad_api_key",
            "the platform key is wrong (401s): requests end retryable, no key leaks, replay after the fix",
            requests=80,
            produce_s=8,
            settings={"stripe_api_key": BAD_KEY, "retry_attempts": 3},
            replay_settings={"stripe_api_key": SecretStr(LOCAL_STRIPE_TEST_KEY)},
            goal=everything_replayed,
        ),
        Scenario(
            "webhook_faults",
            "links paid, failed, written off and voided in Stripe while webhooks are dropped, duplicated, delayed "
            "and reordered and paylink webhooks is SIGKILLed; then paylink reconcile",
            requests=60,
            produce_s=20,
            chaos=lifecycle.drive,
            finish=lifecycle.finish,
            goal=lifecycle.goal,
            webhooks=True,
            private=True,  # moves the emulator's clock and sets its webhook retry schedule
            weights={"created": 120, "duplicate": 4},
        ),
        webhook_network_scenario(),
        Scenario(
            "security",
            "cross-tenant contacts, forged accounts, search-syntax in emails and phones",
            requests=200,
            produce_s=15,
            weights={"cross_tenant": 20, "hostile_contact": 20, "forged_account": 8},
            chaos=worker_kills(1),
        ),
        hostile_scenario(),
        *network_scenarios(),
        *skew_scenarios(),
    ]
