"""``make bench``: paylink's performance figures, each a ratio against a baseline measured in the same run.

    python -m tests.benchmarks.run [--only FIGURE ...] [--keep-stack] [--profile DIR] [--tracing-rounds N]

Starts a private stack (``.local/bench``: Kafka :29092, FerretDB :28017, Stripe emulator :22211,
shortener :22280; ``deploy/local/stack.py``), runs paylink as real subprocesses against it, writes
``.local/bench.json`` and prints a table, then stops the stack (``--keep-stack`` leaves it up). Exits 0
even when a target is missed: it is a report, and it says which figures missed.

Everything (Kafka, FerretDB, the emulators, the worker, the baselines) shares this machine's cores, so
the figures are those of the whole pipeline on one small box, not of the worker alone; the output says
how many cores there were. The workload is the same everywhere: a request for a contact new to Stripe
(customer search and create), three lines (two prices, one amount), spread over several tenants.

Figures (target; ``--help`` of ``tests/benchmarks/run.py`` and docs/operations.md):
- ``latency_hiding``: sagas/s at 200 ms per Stripe call, 128 in flight, over min(the ideal
  ``in_flight / (stripe_calls_per_saga x latency)``, sagas/s at 0 ms in the same run) (>= 0.95): how much
  of the latency is hidden, against what this machine can do at all;
- ``cpu_overhead``: worker CPU per saga at 0 ms, over that of ``tests/benchmarks/bare_loop.py`` doing
  the same Kafka, MongoDB and HTTP operations per request (<= 1.3);
- ``store_ops_per_saga``: MongoDB round trips per created saga, counted by a command-monitoring listener
  in the worker (``tests/benchmarks/counted.py``) (<= 6), with the whole stack's CPU ms per saga (report);
- ``e2e_latency_ms``: p50 and p99 from request produced to result consumed, 10 requests/s, 0 ms (p50 <=
  30, p99 <= 80);
- ``relay_vs_bare``: relay publish rate from a pre-filled outbox, over a bare loop doing the same store
  read + produce + mark on the same store (>= 0.8); relay over a raw producer reported beside it;
- ``rate_saturation``: Stripe requests/s sustained on one account limited to 25/s (emulator and
  paylink), over 25 (>= 0.95, no failed saga, 429s <= 1 % of the calls);
- ``scale_out``: sagas/s of 2 worker processes over 1 (one group, 6 partitions, 200 ms, 8 in flight per
  worker so one worker is latency-bound) (>= 1.8);
- ``tracing_cost``: worker CPU per saga with tracing off (no ``OTEL_*``) over the untraced entry point
  (<= 1.02), and with tracing on (100 % sampled, exported to Jaeger) over off (<= 1.15)
  (``tests/benchmarks/tracing_cost.py``);
- ``rss_mb``: the worker's peak RSS with 1,000 sagas in flight (<= 150);
- ``vs_sequential``: throughput over that of one saga at a time with one call per item, at 200 ms
  (report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tests.benchmarks.common import MONGO, ROOT, cpu_count, stack
from tests.benchmarks.pipeline import e2e_latency
from tests.benchmarks.relay_bench import relay_rates
from tests.benchmarks.throughput import Throughput, run_worker
from tests.benchmarks.tracing_cost import tracing_cost

OUTPUT = ROOT / ".local" / "bench.json"
LATENCY_S = 0.2
IN_FLIGHT = 128

Mongo = AsyncMongoClient[dict[str, Any]]


def figure(value: Any, target: str | None, met: bool | None, **details: Any) -> dict[str, Any]:
    return {"value": value, "target": target, "met": met, **details}


async def _zero_ms(mongo: Mongo, ctx: dict[str, Any]) -> Throughput:
    """The worker at 0 ms, 128 in flight: measured once, used by latency_hiding and cpu_overhead."""
    if "zero" not in ctx:
        ctx["zero"] = await run_worker(
            mongo, "cpu", sagas=400, tenants=16, max_in_flight=IN_FLIGHT,
            profile=ctx.get("profile_path", {}).get("cpu"),
        )  # fmt: skip
    run: Throughput = ctx["zero"]
    return run


async def _concurrent(mongo: Mongo, ctx: dict[str, Any]) -> Throughput:
    if "concurrent" not in ctx:
        ctx["concurrent"] = await run_worker(
            mongo, "latency", sagas=400, tenants=32, latency_ms=int(LATENCY_S * 1000), max_in_flight=IN_FLIGHT,
            profile=ctx.get("profile_path", {}).get("latency"),
        )  # fmt: skip
    run: Throughput = ctx["concurrent"]
    return run


async def latency_hiding(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    run, zero = await _concurrent(mongo, ctx), await _zero_ms(mongo, ctx)
    ideal = IN_FLIGHT / (run.stripe_calls_per_saga * LATENCY_S)
    ceiling = min(ideal, zero.sagas_per_s)
    ratio = run.sagas_per_s / ceiling
    return figure(
        round(ratio, 3), ">= 0.95", ratio >= 0.95,
        sagas_per_s=round(run.sagas_per_s, 1), ideal_sagas_per_s=round(ideal, 1),
        zero_ms_sagas_per_s=round(zero.sagas_per_s, 1), of_ideal=round(run.sagas_per_s / ideal, 3),
        run=run.summary(),
    )  # fmt: skip


async def cpu_overhead(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    worker = await _zero_ms(mongo, ctx)
    bare = await run_worker(mongo, "bare", sagas=400, tenants=16, max_in_flight=IN_FLIGHT, bare=True)
    ratio = worker.cpu_s_per_saga / bare.cpu_s_per_saga
    return figure(
        round(ratio, 2), "<= 1.3", ratio <= 1.3,
        worker_ms_per_saga=round(worker.cpu_s_per_saga * 1000, 2),
        bare_ms_per_saga=round(bare.cpu_s_per_saga * 1000, 2),
        stack_ms_per_saga=round(worker.stack_cpu_ms_per_saga, 1),
        bare_stack_ms_per_saga=round(bare.stack_cpu_ms_per_saga, 1),
        worker=worker.summary(), bare=bare.summary(),
    )  # fmt: skip


async def store_ops(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    run = await run_worker(mongo, "store", sagas=200, tenants=8, max_in_flight=IN_FLIGHT, count_commands=True)
    created = run.outcomes.get("created", 0)
    trips = sum(run.store_commands.values()) / max(created, 1)
    value = {"round_trips": round(trips, 2), "stack_cpu_ms": round(run.stack_cpu_ms_per_saga, 1)}
    per_saga = {name: round(n / max(created, 1), 2) for name, n in sorted(run.store_commands.items())}
    return figure(value, "round_trips <= 6", trips <= 6, by_command=per_saga, created=created, run=run.summary())


async def rate_saturation(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    limit = 25
    run = await run_worker(
        mongo, "rate", sagas=150, tenants=1, emulator_rate_limit=limit, stripe_rate_limit_per_s=float(limit),
        max_in_flight=IN_FLIGHT,
    )  # fmt: skip
    ratio = run.stripe_ok_per_s / limit
    failed = sum(n for status, n in run.outcomes.items() if status != "created")
    share_429 = run.rate_limited / max(run.stripe_requests, 1)
    return figure(
        round(ratio, 3), ">= 0.95, 0 failed sagas, 429s <= 1 %",
        ratio >= 0.95 and failed == 0 and share_429 <= 0.01,
        failed_sagas=failed, rate_limited_429=run.rate_limited, share_429=round(share_429, 4), run=run.summary(),
    )  # fmt: skip


async def relay(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    result = await relay_rates(mongo, entries=3000)
    ratio = result["relay_per_s"] / result["bare_per_s"]
    vs_raw = round(result["relay_per_s"] / result["raw_per_s"], 3)
    return figure(round(ratio, 3), ">= 0.8", ratio >= 0.8, relay_vs_raw=vs_raw, **result)


async def e2e(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    result = await e2e_latency(mongo, rate_per_s=10, duration_s=15)
    met = result["p50_ms"] <= 30 and result["p99_ms"] <= 80
    value = {"p50": result["p50_ms"], "p99": result["p99_ms"]}
    return figure(value, "p50 <= 30, p99 <= 80", met, **result)


async def scale_out(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    """In flight capped at 8 per worker: one worker is bound by Stripe's latency (8 / (5 x 0.2 s) = 8
    sagas/s at most), not by the cores, so a second worker process can double the rate."""
    common: dict[str, Any] = {"sagas": 160, "tenants": 16, "latency_ms": int(LATENCY_S * 1000), "max_in_flight": 8}
    one = await run_worker(mongo, "scale1", workers=1, **common)
    two = await run_worker(mongo, "scale2", workers=2, **common)
    ratio = two.sagas_per_s / one.sagas_per_s
    return figure(
        round(ratio, 2), ">= 1.8", ratio >= 1.8,
        one_sagas_per_s=round(one.sagas_per_s, 1), two_sagas_per_s=round(two.sagas_per_s, 1),
        one=one.summary(), two=two.summary(),
    )  # fmt: skip


async def tracing(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    """``tests.benchmarks.tracing_cost``: worker CPU per saga traced (100 % sampled, exported to a Jaeger
    of its own) ÷ shipped with no ``OTEL_*`` (``on``), and the latter ÷ the untraced entry point
    (``off``); the 0 ms run of ``cpu_overhead`` is one of the ``off`` samples (same workload)."""
    ctx.setdefault("tracing_off", [await _zero_ms(mongo, ctx)])
    result = await tracing_cost(mongo, ctx)
    return figure(
        {"off": result.pop("off_over_baseline"), "on": result.pop("value")}, "off <= 1.02, on <= 1.15",
        result.pop("met"), **{k: v for k, v in result.items() if k != "target"},
    )  # fmt: skip


async def vs_sequential(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    sequential = await run_worker(
        mongo, "sequential", sagas=10, tenants=2, latency_ms=int(LATENCY_S * 1000), max_in_flight=1,
        stripe_items_per_call=1,
    )  # fmt: skip
    concurrent = await _concurrent(mongo, ctx)
    ratio = concurrent.sagas_per_s / sequential.sagas_per_s
    return figure(
        round(ratio, 1), "report", None,
        sequential_sagas_per_s=round(sequential.sagas_per_s, 2),
        concurrent_sagas_per_s=round(concurrent.sagas_per_s, 1),
        sequential=sequential.summary(),
    )  # fmt: skip


async def rss(mongo: Mongo, ctx: dict[str, Any]) -> dict[str, Any]:
    run = await run_worker(mongo, "rss", sagas=1000, tenants=50, latency_ms=int(LATENCY_S * 1000), max_in_flight=1000)
    return figure(round(run.rss_peak_mb, 1), "<= 150", run.rss_peak_mb <= 150, run=run.summary())


FIGURES: dict[str, Callable[[Mongo, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "latency_hiding": latency_hiding,
    "cpu_overhead": cpu_overhead,
    "store_ops_per_saga": store_ops,
    "e2e_latency_ms": e2e,
    "relay_vs_bare": relay,
    "rate_saturation": rate_saturation,
    "scale_out": scale_out,
    "tracing_cost": tracing,
    "rss_mb": rss,
    "vs_sequential": vs_sequential,
}


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [("figure", "value", "target", "met")]
    for name, result in results.items():
        met = result.get("met")
        verdict = "-" if met is None else "yes" if met else "NO"
        rows.append((name, _show(result.get("value")), str(result.get("target")), verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def measure(names: list[str], profile_dir: Path | None, tracing_rounds: int = 1) -> dict[str, dict[str, Any]]:
    mongo: Mongo = AsyncMongoClient(MONGO)
    ctx: dict[str, Any] = {"tracing_rounds": tracing_rounds}
    if profile_dir is not None:
        profiled = ("latency", "cpu", "tracing-baseline", "tracing-off", "tracing-on")
        ctx["profile_path"] = {k: str(profile_dir / f"worker-{k}.folded") for k in profiled}
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            started = time.monotonic()
            print(f"-- {name} ...", flush=True)
            try:
                results[name] = await FIGURES[name](mongo, ctx)
            except Exception as error:  # one broken figure must not lose the others
                traceback.print_exc()
                results[name] = figure(None, None, False, error=repr(error))
            results[name]["seconds"] = round(time.monotonic() - started, 1)
            print(f"   {name}: {_show(results[name]['value'])} ({results[name]['seconds']} s)", flush=True)
    finally:
        await mongo.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(FIGURES), help="measure this figure only")
    parser.add_argument("--keep-stack", action="store_true", help="leave the private stack running")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the worker (collapsed stacks) here")
    parser.add_argument(
        "--tracing-rounds", type=int, default=1, help="rounds of tracing_cost (median of each round's ratios)"
    )
    args = parser.parse_args()
    names = args.only or list(FIGURES)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stack("up")
    try:
        results = asyncio.run(measure(names, args.profile, args.tracing_rounds))
    finally:
        if not args.keep_stack:
            stack("down")
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": cpu_count(),
        "note": "Kafka, FerretDB, the emulators, the worker and the baselines all share these cores",
        "wall_s": round(time.monotonic() - started, 1),
        "figures": results,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print(table(results))
    print()
    print(
        f"{cpu_count()} cores shared by Kafka, FerretDB, both emulators, the worker and the baselines; "
        f"wall time {report['wall_s']} s; details in {OUTPUT.relative_to(ROOT)}"
    )
    missed = [name for name, result in results.items() if result.get("met") is False]
    print(f"targets missed: {', '.join(missed)}" if missed else "every target met")


if __name__ == "__main__":
    main()
