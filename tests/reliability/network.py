"""Network-fault scenarios (issue #17): Toxiproxy between paylink's processes and each dependency.

Every scenario here is ``proxied`` (``routes.Routes``: each process its own MongoDB proxy, shared Kafka,
Stripe and shortener proxies) and private (the Kafka proxy needs the private broker's third listener).

- ``mongo_partition_worker``: the worker is cut off from MongoDB (stalled: connections open, nothing
  passes) while Kafka still delivers; it must not commit what it could not persist, and recovers.
- ``kafka_partition_relay``: the relays' Kafka connections slow down (acks late), then stall, three
  times: batches sent but not acknowledged are not marked, go out again (duplicates, never loss).
- ``mongo_partition_relay``: the relay holding the lease loses MongoDB for three lease lengths; the
  standby must take over (measured), the partitioned relay must not publish once it could have passed.
- ``stripe_network``: Stripe connections stall, are reset after the request went out (the object was
  made, the answer lost) and answers are cut halfway; idempotency keys keep every object single.
- ``slow_network``: latency spikes and a bandwidth limit on MongoDB and Kafka, then slow-close and
  half-open connections (one direction stops, the connection closes seconds later).

The other direction, Stripe's webhook deliveries to ``paylink webhooks`` through a proxy, is
``webhook_network`` (``webhook_network.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.reliability.clocks import no_two_publishing, watch_overlap
from tests.reliability.invariants import Observation
from tests.reliability.runner import Chaos, Scenario, ScenarioRun
from tests.reliability.toxiproxy import Partition, Stream, Toxiproxy


def _toxi(run: ScenarioRun) -> Toxiproxy:
    assert run.toxi is not None, "a network scenario must be proxied"
    return run.toxi


def partition_of(role: Callable[[ScenarioRun], Awaitable[str | None]], at: float, seconds: float) -> Chaos:
    """Stalls the MongoDB proxy of the process ``role`` names, at ``at`` of the window, for ``seconds``."""

    async def chaos(run: ScenarioRun) -> None:
        await run.at(at)
        name = await role(run)
        if name is None:
            run.notes.append("no process to partition was found")
            return
        toxi = _toxi(run)
        toxics = await toxi.partition(f"mongo-{name}", "stall", seconds + 30)
        started = time.monotonic()
        try:
            await _watch_lease(run, name, seconds)
        finally:
            await toxi.heal(f"mongo-{name}", toxics)
        run.notes.append(f"{name} cut off from MongoDB for {time.monotonic() - started:.1f}s")

    return chaos


async def _watch_lease(run: ScenarioRun, partitioned: str, seconds: float) -> None:
    """Sleeps ``seconds``; for a partitioned relay, notes when another relay holds the lease."""
    deadline = time.monotonic() + seconds
    began = time.monotonic()
    while time.monotonic() < deadline:
        if partitioned.startswith("relay") and "takeover_s" not in run.state:
            active = await run.active_relay()
            if active is not None and f"relay-{run.relays.index(active)}" != partitioned:
                run.state["takeover_s"] = time.monotonic() - began
                run.notes.append(f"the standby took the lease {run.state['takeover_s']:.1f}s into the partition")
        await asyncio.sleep(0.2)


async def the_worker(run: ScenarioRun) -> str | None:
    return "worker"


async def the_active_relay(run: ScenarioRun) -> str | None:
    for _ in range(100):
        active = await run.active_relay()
        if active is not None:
            return f"relay-{run.relays.index(active)}"
        await asyncio.sleep(0.1)
    return None


def kafka_blackouts(times: int, seconds: float, kind: Partition = "stall") -> Chaos:
    """Slow acks (latency on the broker's answers), then a blackout, ``times`` times."""

    async def chaos(run: ScenarioRun) -> None:
        toxi = _toxi(run)
        for moment in [0.2 + 0.7 * i / times for i in range(times)]:
            await run.at(moment)
            slow = await toxi.add_toxic("kafka", "latency", "downstream", latency=400, jitter=200)
            await asyncio.sleep(1.5)  # batches go out, their acks are on their way
            toxics = await toxi.partition("kafka", kind, seconds + 30)
            await asyncio.sleep(seconds)
            await toxi.heal("kafka", toxics)
            await toxi.remove_toxic("kafka", slow)

    return chaos


def stripe_network(run_for: float) -> Chaos:
    """Stalls, resets after the request went out, answers cut halfway: a random few of the connections."""

    async def chaos(run: ScenarioRun) -> None:
        toxi = _toxi(run)
        phases: list[tuple[str, Stream, dict[str, int]]] = [
            ("timeout", "downstream", {"timeout": 0}),  # stall: the request went out, no answer ever
            ("reset_peer", "downstream", {"timeout": 20}),  # reset once the request was sent
            ("limit_data", "downstream", {"bytes": 400}),  # the answer cut after 400 bytes
        ]
        await run.at(0.1)
        for kind, stream, attributes in phases * 2:
            toxic = await toxi.add_toxic("stripe", kind, stream, toxicity=0.3, **attributes)
            await asyncio.sleep(run_for)
            await toxi.remove_toxic("stripe", toxic)
            await asyncio.sleep(0.5)

    return chaos


def slow_network(run_for: float) -> Chaos:
    """Latency spikes and a bandwidth limit on MongoDB and Kafka, then slow-close and half-open."""

    async def chaos(run: ScenarioRun) -> None:
        toxi = _toxi(run)
        await run.at(0.1)
        slow = [
            ("mongo-worker", await toxi.add_toxic("mongo-worker", "latency", "downstream", latency=250, jitter=200)),
            ("mongo-relay-0", await toxi.add_toxic("mongo-relay-0", "latency", "upstream", latency=150, jitter=100)),
            ("kafka", await toxi.add_toxic("kafka", "latency", "downstream", latency=200, jitter=150)),
            ("kafka", await toxi.add_toxic("kafka", "bandwidth", "downstream", rate=64)),  # KB/s
            ("mongo-worker", await toxi.add_toxic("mongo-worker", "bandwidth", "upstream", rate=32)),
        ]
        await asyncio.sleep(run_for)
        for proxy, toxic in slow:
            await toxi.remove_toxic(proxy, toxic)
        closing = [
            (proxy, await toxi.add_toxic(proxy, "slow_close", "downstream", delay=3000))
            for proxy in ("kafka", "mongo-worker", "mongo-relay-0", "mongo-relay-1", "stripe")
        ]
        for _ in range(2):  # half-open: one direction stops; the proxy closes the connection 3 s later
            for proxy in ("mongo-worker", "kafka"):
                closing.append((proxy, await toxi.add_toxic(proxy, "timeout", "upstream", toxicity=0.5, timeout=3000)))
            await asyncio.sleep(run_for / 4)
            for proxy, toxic in closing[-2:]:
                await toxi.remove_toxic(proxy, toxic)
            await asyncio.sleep(1.0)
        for proxy, toxic in closing:
            await toxi.remove_toxic(proxy, toxic)

    return chaos


def fired_at_least(**minimum: int) -> Callable[[ScenarioRun, Observation], list[str]]:
    """The toxics the scenario needed actually went in (``Toxiproxy.fired``, by "<proxy> <kind>")."""

    def goal(run: ScenarioRun, obs: Observation) -> list[str]:
        fired = _toxi(run).fired
        problems = []
        for prefix, count in minimum.items():
            wanted = prefix.replace("__", " ").replace("_", "-")
            seen = sum(n for key, n in fired.items() if key.startswith(wanted))
            if seen < count:
                problems.append(f"only {seen} x {wanted} (wanted >= {count})")
        return problems

    return goal


def standby_took_over(run: ScenarioRun, obs: Observation) -> list[str]:
    problems = fired_at_least(mongo_relay=1)(run, obs) + no_two_publishing(run, obs)
    if "takeover_s" not in run.state:
        problems.append("the standby never took the lease while the active relay was cut off")
    return problems


# mongo_partition_relay: worker :19585, relays :19586 and :19587 (+ the stack's metrics_shift)
RELAY_METRICS_PORT = 19585


def both(*parts: Chaos) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        await asyncio.gather(*(part(run) for part in parts))

    return chaos


def network_scenarios() -> list[Scenario]:
    return [
        Scenario(
            "mongo_partition_worker",
            "the worker is cut off from MongoDB (stalled) for 20 s while Kafka keeps delivering",
            requests=200,
            produce_s=30,
            chaos=partition_of(the_worker, 0.3, 20.0),
            goal=fired_at_least(mongo_worker=1),
            proxied=True,
            private=True,
        ),
        Scenario(
            "kafka_partition_relay",
            "the relays' acks slow down, then Kafka stalls them for 8 s, three times (workers unaffected)",
            requests=200,
            produce_s=30,
            chaos=kafka_blackouts(3, 8.0),
            kafka_proxied_for=frozenset({"relay"}),
            goal=fired_at_least(kafka__partition=3),
            proxied=True,
            private=True,
        ),
        Scenario(
            "mongo_partition_relay",
            "the relay holding the lease is cut off from MongoDB for three lease lengths; the standby takes over",
            requests=200,
            produce_s=25,
            chaos=both(partition_of(the_active_relay, 0.3, 3 * 2.0 + 2.0), watch_overlap()),
            metrics_port=RELAY_METRICS_PORT,
            goal=standby_took_over,
            proxied=True,
            private=True,
        ),
        Scenario(
            "stripe_network",
            "Stripe connections stall, are reset after the request went out, and answers are cut halfway",
            requests=200,
            produce_s=25,
            chaos=stripe_network(3.0),
            settings={"stripe_timeout_s": 0.8},
            goal=fired_at_least(stripe__timeout=2, stripe__reset=2, stripe__limit=2),
            proxied=True,
            private=True,
        ),
        Scenario(
            "slow_network",
            "latency spikes and 32-64 KB/s on MongoDB and Kafka, then slow-close and half-open connections",
            requests=200,
            produce_s=30,
            chaos=slow_network(10.0),
            goal=fired_at_least(kafka__latency=1, kafka__bandwidth=1, kafka__slow=1, mongo_worker__timeout=2),
            proxied=True,
            private=True,
        ),
    ]
