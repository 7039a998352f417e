"""``paylink status``: the worker group's lag, sagas, outbox backlog and relay lease, at a glance.

``status`` gathers, each part on its own so one unreachable dependency does not hide the others:

- ``kafka``: the worker group's state and members, and per partition of the requests topic its committed
  offset, end offset and lag (end - committed; end - beginning while nothing is committed);
- ``sagas``: ``in_flight`` (status ``running`` or ``compensating``) and the count per status of sagas
  updated within the window (``--window``, 1 h by default);
- ``outbox``: entries waiting for the relay and the age of the oldest;
- ``relay``: the ``outbox-relay`` lease: its owner (``host:pid:nonce``) and whether it is still held.

``--json`` prints that as one document; an unreachable part is ``{"error": "..."}``, listed in
``unreachable``, and the command exits 3.
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

from consumer.cli.output import EXIT_OK, EXIT_UNREACHABLE, iso, print_table
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
        report.update(sagas=problem, outbox=problem, relay=problem)
        report["unreachable"].append("mongodb")
    return report


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
    }


def status(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(collect_status(settings, args.window))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    for part in report["unreachable"]:
        print(f"paylink status: {part} unreachable", file=sys.stderr)
    return EXIT_UNREACHABLE if report["unreachable"] else EXIT_OK


def print_status(report: Report) -> None:
    kafka, sagas, outbox, relay = (report[k] for k in ("kafka", "sagas", "outbox", "relay"))
    print("KAFKA")
    if "group" in kafka:
        print(
            f"  topic {kafka['topic']}, group {kafka['group']} ({kafka['group_state']}, {kafka['members']} member(s))"
        )
        if kafka["partitions"]:
            print_table(
                ["  PARTITION", "COMMITTED", "END", "LAG"],
                [[f"  {p['partition']}", p["committed"], p["end"], p["lag"]] for p in kafka["partitions"]],
            )
            print(f"  total lag {kafka['total_lag']}")
    if "error" in kafka:
        print(f"  {kafka['error']}")
    print("SAGAS")
    if "error" in sagas:
        print(f"  {sagas['error']}")
    else:
        counts = ", ".join(f"{s} {n}" for s, n in sagas["by_status"].items()) or "none"
        print(f"  in flight (running): {sagas['in_flight']}")
        print(f"  updated in the last {_span(sagas['window_s'])}: {counts}")
    print("OUTBOX")
    if "error" in outbox:
        print(f"  {outbox['error']}")
    else:
        age = f", oldest {outbox['oldest_age_s']} s old ({outbox['oldest_created_at']})" if outbox["backlog"] else ""
        print(f"  backlog {outbox['backlog']}{age}")
    print("RELAY")
    if "error" in relay:
        print(f"  {relay['error']}")
    elif relay["owner"] is None:
        print(f"  no relay has ever held the lease {relay['lease']}")
    else:
        state = f"held, expires in {relay['expires_in_s']} s" if relay["held"] else "lapsed: no active relay"
        print(f"  lease {relay['lease']}: {relay['owner']} ({state}; expires_at {relay['expires_at']})")


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
