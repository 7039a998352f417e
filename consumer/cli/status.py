"""``paylink status``: a verdict (healthy / degraded / down, with reasons) and the figures behind it.

``status`` gathers, each part on its own so one unreachable dependency does not hide the others:

- ``kafka``: the worker group's state and members, and per partition of the requests topic its committed
  offset, end offset and lag (end - committed; end - beginning while nothing is committed);
- ``sagas``: ``in_flight`` (status ``running`` or ``compensating``) and the count per status of sagas
  updated within the window (``--window``, 1 h by default);
- ``outbox``: entries waiting for the relay and the age of the oldest;
- ``relay``: the ``outbox-relay`` lease: its owner (``host:pid:nonce``) and whether it is still held;
- ``dead_letters``: how many, in the window and in all, and the newest;
- ``failures``: sagas that ended failed within the window, by reason and retryable;
- ``lifecycle``: links per lifecycle status (and how many are overdue);
- ``verdict``: ``consumer.app.verdict.judge`` of the above; the exit code is the verdict's (0 healthy,
  1 degraded, 4 down, 3 down because a dependency is unreachable).

``--json`` prints that as one document; an unreachable part is ``{"error": "..."}``, listed in
``unreachable``. ``--watch`` redraws the tables every ``--interval`` seconds on a terminal (the exit code is
then the last verdict's, on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from consumer.app.verdict import Observed, judge
from consumer.cli.output import iso
from consumer.cli.status_render import print_status, span, watch_frame
from consumer.ports import Unreachable
from consumer.runtime.bootstrap import RELAY_LEASE, open_stores
from consumer.runtime.settings import Settings
from domain.errors import RetryableError
from domain.saga_record import IN_FLIGHT_STATUSES

Report = dict[str, Any]


async def collect_status(settings: Settings, window: timedelta) -> Report:
    report: Report = {"generated_at": iso(datetime.now(UTC)), "unreachable": []}
    try:
        report["kafka"] = await kafka_status(settings)
    except (KafkaError, OSError, TimeoutError) as error:  # reported: the other parts still count
        report["kafka"] = {"error": str(error) or type(error).__name__}
        report["unreachable"].append("kafka")
    try:
        report.update(await store_status(settings, window))
    except (Unreachable, RetryableError, PyMongoError, OSError) as error:
        problem = {"error": str(error) or type(error).__name__}
        report.update({part: problem for part in MONGO_PARTS})
        report["unreachable"].append("mongodb")
    verdict = judge(observed(report, window))
    report["verdict"] = {
        "health": verdict.health.value,
        "reasons": list(verdict.reasons),
        "exit_code": verdict.exit_code,
    }
    return report


MONGO_PARTS = ("sagas", "outbox", "relay", "dead_letters", "failures", "lifecycle")


def observed(report: Report, window: timedelta) -> Observed:
    """What the verdict needs from the report (a part with an ``error`` counts as unknown)."""
    kafka, outbox, relay = report["kafka"], report["outbox"], report["relay"]
    letters, failures, sagas = report["dead_letters"], report["failures"], report["sagas"]
    known = "error" not in outbox
    return Observed(
        unreachable=tuple(report["unreachable"]),
        members=kafka.get("members") if "group" in kafka else None,
        total_lag=kafka.get("total_lag") if "group" in kafka else None,
        relay_owner=relay.get("owner"),
        relay_held=relay.get("held") if "error" not in relay else None,
        outbox_oldest_age_s=outbox.get("oldest_age_s") if known else None,
        dead_letters_in_window=letters.get("in_window", 0),
        retryable_failures_in_window=sum(row["count"] for row in failures.get("rows", []) if row["retryable"]),
        compensation_failed_in_window=sagas.get("by_status", {}).get("compensation_failed", 0),
        window=span(int(window.total_seconds())),
    )


async def kafka_status(settings: Settings) -> Report:
    topic, group = settings.requests_topic, settings.consumer_group
    async with contextlib.AsyncExitStack() as stack:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
        stack.push_async_callback(admin.close)
        await admin.start()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, request_timeout_ms=10_000
        )
        stack.push_async_callback(consumer.stop)
        await consumer.start()
        # All topics' metadata: asking for one that is missing would auto-create it on many brokers.
        described_topics = [t for t in await admin.describe_topics() if t["topic"] == topic]
        partitions = sorted(p["partition"] for t in described_topics for p in t["partitions"])
        described = (await admin.describe_consumer_groups([group]))[0].groups[0]
        report: Report = {
            "topic": topic,
            "group": group,
            "group_state": described[2],
            "members": len(described[5]),
            "member_list": [{"client_id": m[1], "host": m[2]} for m in described[5]],
            "partitions": [],
            "total_lag": 0,
        }
        if not partitions:
            report["error"] = f"topic {topic} does not exist (paylink topics create)"
            return report
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
        for tp in tps:
            offset = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None
            lag = max(0, ends[tp] - (offset if offset is not None else starts[tp]))
            report["partitions"].append({"partition": tp.partition, "committed": offset, "end": ends[tp], "lag": lag})
            report["total_lag"] += lag
        return report


async def store_status(settings: Settings, window: timedelta) -> Report:
    now = datetime.now(UTC)
    async with open_stores(settings) as stores:
        everything, recent = await stores.sagas.count_by_status(), await stores.sagas.count_by_status(now - window)
        backlog, oldest = await stores.outbox.backlog()
        lease = await stores.relay_lease.current()
        letters_recent, letters_all = await stores.dead_letters.count(now - window), await stores.dead_letters.count()
        newest = await stores.dead_letters.find(limit=1)
        failures = await stores.sagas.failures_by_reason(now - window)
        lifecycle = await stores.lifecycles.count_by_status()
    relay: Report = {"lease": RELAY_LEASE, "owner": None, "held": False, "expires_at": None}
    if lease is not None:
        relay.update(
            owner=lease.owner,
            held=lease.expires_at > now,
            expires_at=iso(lease.expires_at),
            expires_in_s=round((lease.expires_at - now).total_seconds(), 1),
        )
    return {
        "sagas": {
            "in_flight": sum(everything.get(status, 0) for status in IN_FLIGHT_STATUSES),
            "window_s": int(window.total_seconds()),
            "since": iso(now - window),
            "by_status": dict(sorted(recent.items())),
        },
        "outbox": {
            "backlog": backlog,
            "oldest_created_at": iso(oldest) if oldest else None,
            "oldest_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
        },
        "relay": relay,
        "dead_letters": {
            "in_window": letters_recent,
            "total": letters_all,
            "newest": {"id": newest[0].id, "reason": newest[0].reason, "failed_at": iso(newest[0].first_failed_at)}
            if newest
            else None,
        },
        "failures": {"rows": [{"reason": r, "retryable": retryable, "count": n} for r, retryable, n in failures]},
        "lifecycle": {"by_status": dict(sorted(lifecycle.items()))},
    }


def status(args: argparse.Namespace, settings: Settings) -> int:
    if args.watch:
        return asyncio.run(watch(settings, args.window, args.interval))
    report = asyncio.run(collect_status(settings, args.window))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    for part in report["unreachable"]:
        print(f"paylink status: {part} unreachable", file=sys.stderr)
    return int(report["verdict"]["exit_code"])


async def watch(settings: Settings, window: timedelta, interval_s: float) -> int:
    """Redraws the report every ``interval_s`` until Ctrl-C; returns the last verdict's exit code."""
    code = 0
    tty = sys.stdout.isatty()
    try:
        while True:
            report = await collect_status(settings, window)
            code = int(report["verdict"]["exit_code"])
            sys.stdout.write(watch_frame(report, interval_s, tty))
            sys.stdout.flush()
            await asyncio.sleep(interval_s)  # the refresh period, not a synchronisation
    except (KeyboardInterrupt, asyncio.CancelledError):
        return code
