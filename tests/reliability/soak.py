"""``make soak``: twenty minutes of steady load with a low rate of mixed faults; fails on a leak.

    .venv/bin/python -m tests.reliability.soak [--minutes 20] [--rate 4] [--sample-s 5] [--keep-stack]

One worker and two relays behind Toxiproxy on the reliability suite's private stack take ``rate``
requests a second (near what one worker does on the 2-core machine while Kafka and FerretDB share it).
About every 90 s one fault lands: a worker or relay SIGKILL, a MongoDB or Kafka latency spike, Stripe
connections reset, the worker cut off from MongoDB for a few seconds. Every ``sample_s`` the sampler
writes a row: per process RSS (``/proc/<pid>/status``), open file descriptors (``/proc/<pid>/fd``) and
asyncio tasks (``paylink_asyncio_tasks`` on its ``/metrics``), the outbox (unpublished and total), saga
and dead-letter collection sizes and the group's Kafka lag. At the end: the scenario's invariants, a CSV
and a PNG under ``.local/soak/<time>/``, and a least-squares slope of each series over the steady part
(after the first fifth). It fails on any violation or on a slope above ``LIMITS`` (per minute).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.reliability.report import write_report
from tests.reliability.runner import Chaos, Scenario, ScenarioRun
from tests.reliability.soak_plot import plot, slope_per_minute
from tests.reliability.stack import ROOT, PrivateStack
from tests.reliability.toxiproxy import ToxiproxyServer

METRICS_PORT = 19590  # worker :19590, relays :19591 and :19592
SOAK_STATE = ROOT / ".local" / "soak-stack"  # its own stack and ports: it can run beside `make reliability`
# Growth per minute over the steady part above which the soak fails: a leak of one buffer per request
# (~10 KB at 12 requests/s) would add ~7 MiB a minute; one file descriptor or task a minute is a slow leak.
LIMITS = {"rss_mib": 1.0, "fds": 0.5, "tasks": 1.0, "unpublished": 5.0, "lag": 5.0}
FIELDS = ["t_s", "process", "rss_mib", "fds", "tasks", "unpublished", "outbox", "sagas", "dead_letters", "lag"]


def _proc(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def _tasks(http: httpx.AsyncClient, port: int) -> int:
    for line in (await http.get(f"http://127.0.0.1:{port}/metrics")).text.splitlines():
        if line.startswith("paylink_asyncio_tasks "):
            return int(float(line.split()[1]))
    return -1


def sampler(rows: list[dict[str, object]], every_s: float) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        async with httpx.AsyncClient(timeout=3) as http:
            while run.elapsed() < run.scenario.produce_s:
                await _sample(run, http, rows)
                await asyncio.sleep(every_s)

    return chaos


async def _sample(run: ScenarioRun, http: httpx.AsyncClient, rows: list[dict[str, object]]) -> None:
    db = run.db
    try:
        sizes = {
            "unpublished": await db["outbox"].count_documents({"published": False}),
            "outbox": await db["outbox_published"].estimated_document_count(),  # grows until the retention purge
            "sagas": await db["sagas"].estimated_document_count(),
            "dead_letters": await db["dead_letters"].estimated_document_count(),
        }
        committed, ends = await run.lag_now()
        lag = sum(max(0, ends[p] - max(0, committed.get(p, 0))) for p in ends)
    except Exception as error:  # a fault is on: this sample has no store/Kafka figures
        run.notes.append(f"sample at {run.elapsed():.0f}s incomplete: {type(error).__name__}")
        return
    for index, process in enumerate([*run.workers, *run.relays]):
        if not process.alive or process.process is None:
            continue
        try:
            rss, fds = _proc(process.process.pid)
            tasks = await _tasks(http, METRICS_PORT + index)
        except (OSError, httpx.HTTPError, StopIteration):
            continue  # restarting
        role = "worker" if index < len(run.workers) else f"relay-{index - len(run.workers)}"
        row = {"t_s": round(run.elapsed(), 1), "process": role, "rss_mib": round(rss, 2), "fds": fds}
        rows.append({**row, "tasks": tasks, **sizes, "lag": lag})


def faults(every_s: float) -> Chaos:
    """One fault about every ``every_s`` seconds, in turn."""

    async def chaos(run: ScenarioRun) -> None:
        assert run.toxi is not None
        toxi = run.toxi
        kinds = ["worker_kill", "mongo_latency", "relay_kill", "stripe_reset", "kafka_latency", "mongo_cut"]
        turn = 0
        while run.elapsed() + every_s < run.scenario.produce_s:
            await asyncio.sleep(every_s * run.rng.uniform(0.7, 1.3))
            kind = kinds[turn % len(kinds)]
            turn += 1
            if kind == "worker_kill":
                run.kill(run.workers[0])
                await asyncio.sleep(2)
                run.restart(run.workers[0])
            elif kind == "relay_kill":
                active = await run.active_relay()
                if active is not None:
                    run.kill(active)
                    await asyncio.sleep(run.settings.relay_lease_s + 1)
                    run.restart(active)
            else:
                proxy, toxic, attributes = {
                    "mongo_latency": ("mongo-worker", "latency", {"latency": 300, "jitter": 200}),
                    "stripe_reset": ("stripe", "reset_peer", {"timeout": 20}),
                    "kafka_latency": ("kafka", "latency", {"latency": 300, "jitter": 200}),
                    "mongo_cut": ("mongo-worker", "latency", {"latency": 8000}),  # a 5 s stall
                }[kind]
                name = await toxi.add_toxic(proxy, toxic, "downstream", toxicity=0.5, **attributes)
                await asyncio.sleep(5)
                await toxi.remove_toxic(proxy, name)

    return chaos


def soak_scenario(minutes: float, rate: float, sample_s: float, rows: list[dict[str, object]]) -> Scenario:
    seconds = minutes * 60
    return Scenario(
        "soak",
        f"{minutes:.0f} min at {rate:.0f} requests/s, one fault about every 90 s",
        requests=int(seconds * rate),
        produce_s=seconds,
        chaos=_both(sampler(rows, sample_s), faults(90.0)),
        proxied=True,
        private=True,
        metrics_port=METRICS_PORT,
        settle_timeout_s=600.0,
    )


def _both(*parts: Chaos) -> Chaos:
    async def chaos(run: ScenarioRun) -> None:
        await asyncio.gather(*(part(run) for part in parts))

    return chaos


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def judge(rows: list[dict[str, object]]) -> tuple[list[str], list[str]]:
    """(lines for the report, problems): start/end and slope of each series over the steady part."""
    lines, problems = [], []
    roles = sorted({str(r["process"]) for r in rows})
    series = {
        f"{role} {name}": [(r["t_s"], r[name]) for r in rows if r["process"] == role]
        for role in roles
        for name in ("rss_mib", "fds", "tasks")
    }
    first_role = [r for r in rows if r["process"] == "worker"]
    for name in ("unpublished", "lag", "outbox", "sagas", "dead_letters"):
        series[name] = [(r["t_s"], r[name]) for r in first_role]
    for label, points in series.items():
        if len(points) < 10:
            problems.append(f"{label}: only {len(points)} samples")
            continue
        slope = slope_per_minute(points)
        name = label.split()[-1]
        limit = LIMITS.get(name)
        verdict = "" if limit is None else ("ok" if slope <= limit else f"ABOVE {limit}/min")
        lines.append(f"{label:22} start {points[0][1]!s:>8} end {points[-1][1]!s:>8} slope {slope:+9.3f}/min {verdict}")
        if limit is not None and slope > limit:
            problems.append(f"{label} grows {slope:+.3f}/min (limit {limit}/min)")
    return lines, problems


async def _soak(args: argparse.Namespace, stack: PrivateStack, out: Path) -> int:
    rows: list[dict[str, object]] = []
    scenario = soak_scenario(args.minutes, args.rate, args.sample_s, rows)
    server = ToxiproxyServer(out, stack.toxiproxy_port)
    await server.start()
    try:
        result = await ScenarioRun(scenario, stack.services, stack, out, seed=args.seed).execute()
    finally:
        server.stop()
    write_csv(rows, out / "soak.csv")
    plot(rows, out / "soak.png", f"paylink soak: {scenario.summary}")
    lines, problems = judge(rows)
    violations = write_report([result], sys.stdout, result.seconds)
    print("\n".join(["soak series (steady part: after the first fifth):", *lines]))
    for problem in problems:
        print(f"soak: LEAK? {problem}")
    print(f"soak: {len(rows)} samples, CSV {out / 'soak.csv'}, plot {out / 'soak.png'}")
    return 1 if violations or problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--rate", type=float, default=4.0, help="requests per second (12 outran a loaded 2-core box: lag grew)"
    )
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=20_261_201)
    parser.add_argument("--keep-stack", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    out = ROOT / ".local" / "soak" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    stack = PrivateStack(
        SOAK_STATE,
        kafka_port=19692,
        mongo_port=19617,
        stripe_port=19611,
        shortener_port=19680,
        webhooks_port=19688,
        kafka_proxied=(19694, 19792),
        toxiproxy_port=18475,
    )
    stack.up()
    started = time.monotonic()
    try:
        code = asyncio.run(_soak(args, stack, out))
    finally:
        if not args.keep_stack:
            stack.down()
    print(f"soak: {time.monotonic() - started:.0f}s in all")
    return code


if __name__ == "__main__":
    sys.exit(main())
