"""``make reliability``: every scenario against a private local stack; exits non-zero on any violation.

    .venv/bin/python -m tests.reliability.run [--only NAME ...] [--reduced] [--keep-stack] [--seed N]
        [--state-dir DIR] [--kafka-port N] [--mongo-port N] [--stripe-port N] [--shortener-port N]
        [--webhooks-port N] [--toxiproxy-port N]

The private stack (``.local/reliability``, Kafka :19392/:19393, FerretDB :19317, Stripe emulator :19311,
shortener emulator :19380; ``paylink webhooks`` of a scenario on :19388; the proxied scenarios' Toxiproxy
API on :18474, its proxies on ports derived from the stack's (``routes.py``); the scenarios' ``/metrics``
ports move with ``--webhooks-port``; all movable, so that two runs can share a machine) is started here
and stopped at the end (``--keep-stack`` leaves it up); the scenarios restart its broker, its store and
its shortener. Process output of each scenario is kept under
``.local/reliability/runs/<time>/<scenario>/``. The report ends with the table and the line
``reliability: <scenarios> scenarios, <requests> requests, <violations> violations``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from tests.reliability.report import write_report
from tests.reliability.runner import Scenario, ScenarioResult, ScenarioRun
from tests.reliability.scenarios import scenarios
from tests.reliability.stack import ROOT, PrivateStack
from tests.reliability.toxiproxy import ToxiproxyServer

STATE_DIR = ROOT / ".local" / "reliability"
WEBHOOKS_PORT = 19388


async def _fresh(stack: PrivateStack) -> None:
    """Forgets what an earlier run left: emulator state and the scenario databases."""
    services = stack.services
    async with httpx.AsyncClient(timeout=10) as http:
        for base in (services.stripe_base, services.shortener_base):
            (await http.post(f"{base}/_emulator/reset")).raise_for_status()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(services.mongodb_uri)
    try:
        for name in await client.list_database_names():
            if name.startswith("rel_"):
                await client.drop_database(name)
    finally:
        await client.close()


async def run_all(
    names: list[str] | None, reduced: bool, seed: int, stack: PrivateStack, scale: float = 1.0
) -> list[ScenarioResult]:
    await _fresh(stack)
    chosen = [s for s in scenarios(reduced) if not names or s.name in names]
    if scale != 1.0:
        chosen = [
            dataclasses.replace(s, requests=max(5, int(s.requests * scale)), produce_s=s.produce_s * scale)
            for s in chosen
        ]
    log_root = stack.state_dir / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    toxiproxy = ToxiproxyServer(log_root, stack.toxiproxy_port)
    if any(s.proxied for s in chosen):
        await toxiproxy.start()
    try:
        return await _run_each(chosen, seed, stack, log_root)
    finally:
        toxiproxy.stop()


async def _run_each(chosen: list[Scenario], seed: int, stack: PrivateStack, log_root: Path) -> list[ScenarioResult]:
    results = []
    for index, scenario in enumerate(chosen):
        print(f"reliability: running {scenario.name} ({index + 1}/{len(chosen)})…", file=sys.stderr, flush=True)
        run = ScenarioRun(scenario, stack.services, stack, log_root, seed + index)
        try:
            result = await run.execute()
        except Exception as error:  # a broken scenario is a violation, not the end of the suite
            traceback.print_exc()
            result = run.crashed(error)
        print(
            f"reliability: {scenario.name}: {result.violations} violation(s) in {result.seconds:.0f}s",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    print(f"reliability: process output under {log_root}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    parser.add_argument("--reduced", action="store_true", help="the reduced set of `make test`")
    parser.add_argument("--keep-stack", action="store_true", help="leave the private stack running")
    parser.add_argument("--seed", type=int, default=20_251_126)
    parser.add_argument("--scale", type=float, default=1.0, help="scale requests and durations (quick tries)")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    for service, port in (("kafka", 19392), ("mongo", 19317), ("stripe", 19311), ("shortener", 19380)):
        parser.add_argument(f"--{service}-port", type=int, default=port, help=f"private stack's {service} port")
    parser.add_argument(
        "--webhooks-port", type=int, default=WEBHOOKS_PORT, help="port of the scenarios' paylink webhooks"
    )
    parser.add_argument("--toxiproxy-port", type=int, default=18474, help="API port of the scenarios' Toxiproxy")
    args = parser.parse_args(argv)
    known = {s.name for s in scenarios(args.reduced)}
    unknown = set(args.only or []) - known
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(known)}")
    # The suite's own Kafka clients would log every reconnect while the broker restarts: not news.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started = time.monotonic()
    stack = PrivateStack(
        args.state_dir,
        kafka_port=args.kafka_port,
        mongo_port=args.mongo_port,
        stripe_port=args.stripe_port,
        shortener_port=args.shortener_port,
        webhooks_port=args.webhooks_port,
        toxiproxy_port=args.toxiproxy_port,
        # The scenarios' /metrics ports (19585-19597 by default) move with the webhooks port.
        metrics_shift=args.webhooks_port - WEBHOOKS_PORT,
    )
    stack.up()
    try:
        results = asyncio.run(run_all(args.only, args.reduced, args.seed, stack, args.scale))
    finally:
        if not args.keep_stack:
            stack.down()
    violations = write_report(results, sys.stdout, time.monotonic() - started)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
