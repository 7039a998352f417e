"""What tracing costs the worker: CPU per saga at 0 ms Stripe latency, three modes in one run.

    async def tracing_cost(mongo: AsyncMongoClient[dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]

has the signature of the figures of ``tests/benchmarks/run.py`` (wire it into ``FIGURES`` there) and
returns a ``figure`` dict: ``value`` is ``on ÷ off`` (target <= 1.15), ``met`` both targets, and the
details hold ``off ÷ baseline`` (target <= 1.02) with every run. The stack is the benchmark's (``common``).

- ``baseline``: ``tests.benchmarks.untraced_worker``, i.e. ``consumer.tracing.enabled = False``: none
  of the tracing code paths run (no context extracted, no span opened, no log context);
- ``off``: ``paylink worker`` as shipped with no ``OTEL_*`` variable: OpenTelemetry API present, no SDK,
  no instrumentation, nothing exported;
- ``on``: ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a Jaeger v2 of its own (``tests.jaeger``),
  ``OTEL_TRACES_SAMPLER=always_on``: every saga's spans recorded and exported over OTLP/HTTP.

Each round runs the three modes back to back (baseline, off, on; the next round in reverse order), and
each ratio is taken within a round, then the median over the rounds is the figure: the machine is shared
and its load moves the CPU per saga of every run (of one mode, from one run to the next) by more than
the targets' margins, but it moves less between runs a few seconds apart than between rounds, and a
median ignores one disturbed round where a mean would not. Same workload and same runs as before: only
how the samples combine changed (one round gives the same figure either way). ``make bench`` runs
``ROUNDS`` rounds unless ``--tracing-rounds`` says otherwise (``ctx["tracing_rounds"]``) and passes the
0 ms run it already made (the same workload, no ``OTEL_*``) as ``ctx["tracing_off"]``: that run is the
first round's ``off`` sample, which saves a run. With ``--profile`` the first round's runs are profiled.

Standalone, on any stack: ``python -m tests.benchmarks.tracing_cost --kafka-port ... --mongo-port ...
--stripe-port ... --shortener-port ... [--rounds N]`` (the stack must be up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.benchmarks import common, throughput
from tests.benchmarks.throughput import Throughput, run_worker
from tests.jaeger import running_jaeger

SAGAS, TENANTS, IN_FLIGHT, ROUNDS = 400, 16, 128, 1
OTEL_ON = {"OTEL_TRACES_SAMPLER": "always_on"}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The worker subprocess inherits ``os.environ`` (``tests.e2e.processes.environment``): set, then restore."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("OTEL_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("OTEL_")]:
            del os.environ[key]
        os.environ.update(saved)


@contextlib.contextmanager
def untraced_worker() -> Iterator[None]:
    """``run_worker`` starts ``python -m consumer.cli worker``; the baseline starts the untraced entry point."""
    original = common.Process.paylink

    def untraced(
        cls: type[common.Process], command: str, settings: Any, log_path: Path, counts: Path | None = None
    ) -> common.Process:
        return cls(["-m", "tests.benchmarks.untraced_worker", command], settings, log_path)

    common.Process.paylink = classmethod(untraced)  # type: ignore[assignment, method-assign]
    try:
        yield
    finally:
        common.Process.paylink = original  # type: ignore[method-assign]


async def _run(mongo: AsyncMongoClient[dict[str, Any]], mode: str, otlp: str, profile: str | None) -> Throughput:
    label = f"trace-{mode}"
    run: dict[str, Any] = {"sagas": SAGAS, "tenants": TENANTS, "max_in_flight": IN_FLIGHT, "profile": profile}
    if mode == "on":
        with environment({**OTEL_ON, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp}):
            return await run_worker(mongo, label, **run)
    with environment({}), untraced_worker() if mode == "baseline" else contextlib.nullcontext():
        return await run_worker(mongo, label, **run)


async def tracing_cost(mongo: AsyncMongoClient[dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]:
    given: list[Throughput] = ctx.get("tracing_off", [])
    runs: dict[str, list[Throughput]] = {"baseline": [], "off": list(given), "on": []}
    order = ["baseline", "off", "on"]
    rounds = max(1, int(ctx.get("tracing_rounds", ROUNDS)))
    profiles: dict[str, str] = ctx.get("profile_path", {})
    with tempfile.TemporaryDirectory() as scratch, running_jaeger(Path(scratch) / "jaeger.log") as jaeger:
        for round_number in range(rounds):
            for mode in order if round_number % 2 == 0 else list(reversed(order)):
                if not (mode == "off" and given and round_number == 0):
                    # With ``--profile``, only the first run of each mode is profiled (py-spy costs CPU too).
                    profile = profiles.get(f"tracing-{mode}") if round_number == 0 else None
                    runs[mode].append(await _run(mongo, mode, jaeger.otlp, profile))
    cpu = {mode: statistics.median(r.cpu_s_per_saga for r in done) for mode, done in runs.items()}
    per_round = list(zip(runs["baseline"], runs["off"], runs["on"], strict=True))
    on_off = statistics.median(on.cpu_s_per_saga / off.cpu_s_per_saga for _, off, on in per_round)
    off_base = statistics.median(off.cpu_s_per_saga / base.cpu_s_per_saga for base, off, _ in per_round)
    return {
        "value": round(on_off, 3),
        "target": "on/off <= 1.15, off/baseline <= 1.02",
        "met": on_off <= 1.15 and off_base <= 1.02,
        "off_over_baseline": round(off_base, 3),
        "rounds": rounds,
        "per_round": [
            {
                "on_off": round(on.cpu_s_per_saga / off.cpu_s_per_saga, 3),
                "off_baseline": round(off.cpu_s_per_saga / base.cpu_s_per_saga, 3),
            }
            for base, off, on in per_round
        ],
        "cpu_ms_per_saga": {mode: round(value * 1000, 3) for mode, value in cpu.items()},  # medians
        "runs": {mode: [r.summary() for r in done] for mode, done in runs.items()},
    }


def _use_stack(kafka: int, mongo: int, stripe: int, shortener: int) -> str:
    """Points the benchmark machinery at an already running stack; returns its MongoDB URI."""
    common.KAFKA = f"localhost:{kafka}"
    common.MONGO = f"mongodb://127.0.0.1:{mongo}"
    common.STRIPE = f"http://127.0.0.1:{stripe}"
    setattr(throughput, "STRIPE", common.STRIPE)  # noqa: B010 (imported by name there)
    common.SHORTENER = f"http://127.0.0.1:{shortener}"
    return common.MONGO


async def _main(uri: str, rounds: int) -> dict[str, Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        return await tracing_cost(mongo, {"tracing_rounds": rounds})
    finally:
        await mongo.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    for name, default in common.PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=default)
    args = parser.parse_args()
    uri = _use_stack(args.kafka_port, args.mongo_port, args.stripe_port, args.shortener_port)
    print(json.dumps(asyncio.run(_main(uri, args.rounds)), indent=1, default=str))
