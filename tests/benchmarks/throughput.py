"""One worker subprocess (paylink's, or the bare loop) working off a burst of requests.

The requests are produced at once, right after the worker reports ready, so the worker always has work
(it measures capacity, not the producer). Throughput is taken between 10 % and 90 % of the committed
requests, leaving out the start (connections, first fetches) and the tail (the last sagas, with fewer
in flight). CPU is the worker's own, from ready to the last commit (psutil).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.benchmarks.common import (
    STRIPE,
    CommitProbe,
    Process,
    Samples,
    StackCpu,
    api_requests,
    configure_stripe,
    create_topics,
    log_dir,
    produce,
    requests_for,
    reset_emulators,
    sagas_ended,
    seed,
    settings_for,
    stripe_stats,
)
from tests.benchmarks.counted import read_after


@dataclass
class Throughput:
    label: str
    sagas: int
    sagas_per_s: float
    stripe_calls_per_saga: float
    stripe_ok_per_s: float
    rate_limited: int
    cpu_s_per_saga: float
    rss_peak_mb: float
    outcomes: dict[str, int]
    wall_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    stripe_requests: int = 0
    store_commands: dict[str, int] = field(default_factory=dict)

    @property
    def stack_cpu_ms_per_saga(self) -> float:
        """CPU of the worker(s), Kafka, FerretDB and both emulators per saga."""
        return sum(self.cpu_s.values()) * 1000 / self.sagas

    def summary(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


def _py_spy(output: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy sampling the worker (100 Hz, without stopping it) into collapsed stacks (``--format raw``)."""
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-o", output, "-f", "raw",
               "-r", "100", "-p", str(pid), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run_worker(
    mongo: AsyncMongoClient[dict[str, Any]],
    label: str,
    *,
    sagas: int,
    tenants: int,
    latency_ms: int = 0,
    emulator_rate_limit: int | None = None,
    bare: bool = False,
    timeout_s: float = 240,
    profile: str | None = None,
    workers: int = 1,
    count_commands: bool = False,
    **overrides: Any,
) -> Throughput:
    """``workers`` worker processes (one consumer group) working off ``sagas`` requests; with
    ``count_commands`` their MongoDB round trips are counted (``tests.benchmarks.counted``)."""
    name = f"bench-{label}-{uuid.uuid4().hex[:6]}"
    settings = settings_for(name, **overrides)
    database = settings.mongodb_uri.rsplit("/", 1)[1]
    await reset_emulators()
    await create_topics(settings)
    made = await seed(mongo, settings, tenants, contacts_per_tenant=-(-sagas // tenants))
    bodies = requests_for(made, sagas)
    await configure_stripe(latency_ms=latency_ms, rate_limit=emulator_rate_limit)
    counts = [log_dir() / f"{name}-{n}.counts.json" for n in range(workers)] if count_commands else []
    procs = [_start(settings, log_dir() / f"{name}-worker{n}.log", bare, counts[n] if counts else None)
             for n in range(workers)]  # fmt: skip
    worker = procs[0]
    spy: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.gather(*(proc.wait_ready() for proc in procs))
        before = await stripe_stats()
        counts_before = [read_after(path, time.time()) for path in counts]
        cpu_before, stack_cpu = [proc.cpu_s() for proc in procs], StackCpu()
        if profile:
            spy = _py_spy(profile, worker.process.pid)
        started = time.monotonic()
        await produce(settings, bodies)
        completions, stripe_ok = Samples(), Samples()
        async with CommitProbe(settings) as probe, httpx.AsyncClient(timeout=10) as http:
            while True:
                committed = await probe.committed()
                ended = [await sagas_ended(http, proc.metrics_port) for proc in procs] if not bare else [committed]
                completions.add(sum(ended))
                stats = (await http.get(f"{STRIPE}/_emulator/stats")).json()
                stripe_ok.add(api_requests(stats, "200", since=before))
                if committed >= sagas:
                    break
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(f"only {committed}/{sagas} requests committed after {timeout_s}s")
                await asyncio.sleep(0.1)
        wall = time.monotonic() - started
        cpu = sum(proc.cpu_s() for proc in procs) - sum(cpu_before)
        services_cpu = stack_cpu.used()
        rss = max(proc.rss_peak_mb() for proc in procs)
        commands: Counter[str] = Counter()
        for path, base in zip(counts, counts_before, strict=True):
            commands.update(read_after(path, time.time()))
            commands.subtract(base)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)
        outcomes: dict[str, int] = {}
        async for row in await mongo[database]["sagas"].aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]):
            outcomes[str(row["_id"])] = int(row["n"])
    finally:
        for proc in procs:
            proc.stop()
        if spy is not None and spy.poll() is None:
            spy.kill()
    await configure_stripe(latency_ms=0, rate_limit=None)
    await mongo.drop_database(database)
    ok = api_requests(stats, "200", since=before)
    return Throughput(
        label=label,
        sagas=sagas,
        # Between 10 % and 90 % of the outcomes (worker: its own saga counter; bare loop: commits).
        sagas_per_s=completions.rate_between(sagas * 0.1, sagas * 0.9),
        stripe_calls_per_saga=ok / sagas,
        # Stripe requests answered 200 per second, between 10 % and 90 % of them (emulator's counts).
        stripe_ok_per_s=stripe_ok.rate_between(ok * 0.1, ok * 0.9) if ok else 0.0,
        rate_limited=int(stats.get("rate_limited", 0)) - int(before.get("rate_limited", 0)),
        cpu_s_per_saga=cpu / sagas,
        rss_peak_mb=rss,
        outcomes=outcomes,
        wall_s=wall,
        cpu_s={"worker": round(cpu, 2), **services_cpu},
        workers=workers,
        stripe_requests=api_requests(stats, None, since=before),
        store_commands={name: n for name, n in commands.items() if n},
    )


def _start(settings: Settings, log: Path, bare: bool, counts: Path | None) -> Process:
    return Process.bare_loop(settings, log) if bare else Process.paylink("worker", settings, log, counts)
