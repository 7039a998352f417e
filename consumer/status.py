"""Operator views: ``paylink status`` and ``paylink dead-letters list|show|purge``.

``status`` gathers, each part on its own so one unreachable dependency does not hide the others:

- ``kafka``: the worker group's state and members, and per partition of the requests topic its committed
  offset, end offset and lag (end - committed; end - beginning while nothing is committed);
- ``sagas``: ``in_flight`` (status ``running`` or ``compensating``) and the count per status of sagas
  updated within the window (``--window``, 1 h by default);
- ``outbox``: entries waiting for the relay and the age of the oldest;
- ``relay``: the ``outbox-relay`` lease: its owner (``host:pid:nonce``) and whether it is still held.

``--json`` prints that as one document; an unreachable part is ``{"error": "..."}``, listed in
``unreachable``, and the command exits 3. ``dead-letters show`` writes the raw message to stdout byte
for byte and the record as ``key: value`` lines to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.commands import (
    CLI_TIMEOUT_S,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Unreachable,
    print_table,
)
from consumer.settings import Settings

Report = dict[str, Any]


@contextlib.asynccontextmanager
async def mongo_database(settings: Settings) -> AsyncIterator[Any]:
    """paylink's database, after a ping; ``Unreachable`` when MongoDB does not answer in time."""
    from pymongo import AsyncMongoClient
    from pymongo.errors import ConnectionFailure

    from consumer.bootstrap import database_name

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=int(CLI_TIMEOUT_S * 1000)
    )
    try:
        try:
            await client.admin.command("ping")
        except ConnectionFailure as error:
            raise Unreachable(f"MongoDB (PAYLINK_MONGODB_URI) did not answer: {type(error).__name__}") from None
        yield client[database_name(settings.mongodb_uri)]
    finally:
        await client.close()


# --- status ----------------------------------------------------------------------------------------


async def collect_status(settings: Settings, window: timedelta) -> Report:
    from aiokafka.errors import KafkaError
    from pymongo.errors import PyMongoError

    from domain.errors import RetryableError

    report: Report = {"generated_at": _iso(datetime.now(UTC)), "unreachable": []}
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
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

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
    from adapters.mongo.lease import MongoLease
    from adapters.mongo.outbox import MongoOutbox
    from adapters.mongo.saga_store import MongoSagaStore
    from consumer.bootstrap import RELAY_LEASE
    from domain.saga_record import IN_FLIGHT_STATUSES

    now = datetime.now(UTC)
    async with mongo_database(settings) as database:
        sagas = MongoSagaStore(database)
        everything, recent = await sagas.count_by_status(), await sagas.count_by_status(now - window)
        backlog, oldest = await MongoOutbox(database).backlog()
        lease = await MongoLease(database, RELAY_LEASE, "paylink-status", timedelta(seconds=1)).current()
    relay: Report = {"lease": RELAY_LEASE, "owner": None, "held": False, "expires_at": None}
    if lease is not None:
        relay.update(
            owner=lease.owner,
            held=lease.expires_at > now,
            expires_at=_iso(lease.expires_at),
            expires_in_s=round((lease.expires_at - now).total_seconds(), 1),
        )
    return {
        "sagas": {
            "in_flight": sum(everything.get(status, 0) for status in IN_FLIGHT_STATUSES),
            "window_s": int(window.total_seconds()),
            "since": _iso(now - window),
            "by_status": dict(sorted(recent.items())),
        },
        "outbox": {
            "backlog": backlog,
            "oldest_created_at": _iso(oldest) if oldest else None,
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


# --- dead letters ----------------------------------------------------------------------------------


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"reason": args.reason, "account_id": args.account, "since": args.since, "until": args.until}


async def _letters(settings: Settings, action: str, **kw: Any) -> Any:
    from adapters.mongo.dead_letters import MongoDeadLetters

    async with mongo_database(settings) as database:
        return await getattr(MongoDeadLetters(database), action)(**kw)


def dead_letters_list(args: argparse.Namespace, settings: Settings) -> int:
    letters = asyncio.run(_letters(settings, "find", limit=args.limit, **_filters(args)))
    if args.json:
        for letter in letters:
            fields = {k: v for k, v in vars(letter).items() if k != "raw"}
            print(json.dumps({**fields, "bytes": len(letter.raw)}, default=_iso))
        return EXIT_OK
    print_table(
        ["ID", "FIRST_FAILED_AT", "ATTEMPTS", "REASON", "EVENT_ID", "ACCOUNT", "BYTES", "MESSAGE"],
        [
            [
                d.id,
                _iso(d.first_failed_at),
                d.attempts,
                d.reason,
                d.event_id,
                d.account_id,
                len(d.raw),
                d.message if len(d.message) <= 60 else d.message[:59] + "…",
            ]
            for d in letters
        ],
    )
    return EXIT_OK


def dead_letters_show(args: argparse.Namespace, settings: Settings) -> int:
    letter = asyncio.run(_letters(settings, "get", letter_id=args.id))
    if letter is None:
        print(f"paylink dead-letters: no dead letter {args.id!r}", file=sys.stderr)
        return EXIT_FAILED
    for key, value in vars(letter).items():
        if key != "raw":
            print(f"{key}: {_iso(value) if isinstance(value, datetime) else value}", file=sys.stderr)
    print(f"bytes: {len(letter.raw)}", file=sys.stderr, flush=True)
    sys.stdout.buffer.write(letter.raw)
    sys.stdout.buffer.flush()
    return EXIT_OK


def dead_letters_purge(args: argparse.Namespace, settings: Settings) -> int:
    filters = _filters(args)
    if args.all == any(value is not None for value in filters.values()):
        print(
            "paylink dead-letters purge: give filters (--reason/--account/--since/--until) or --all, not both",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.dry_run:
        letters = asyncio.run(_letters(settings, "find", limit=0, **filters))
        print(f"would purge {len(letters)} dead letter(s)")
        return EXIT_OK
    purged = asyncio.run(_letters(settings, "purge", **filters))
    print(f"purged {purged} dead letter(s)")
    return EXIT_OK


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _iso(moment: Any) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(moment).__name__}")
