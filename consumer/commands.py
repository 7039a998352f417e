"""Operator commands of ``paylink`` that change things: ``topics create``, ``publish``, ``replay``
(its work is in ``consumer.replay``), and the small toolkit every command shares: exit codes, the
``Unreachable`` error, fast-failing MongoDB URIs, tables and the progress line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from consumer.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
CLI_TIMEOUT_S = 5.0  # how long a command waits for MongoDB before exiting with EXIT_UNREACHABLE
TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


class Unreachable(Exception):
    """A dependency (Kafka, MongoDB) did not answer: the command exits with ``EXIT_UNREACHABLE``."""


# --- shared by the commands ----------------------------------------------------------------------


def quiet_logging(settings: Settings) -> None:
    """Commands log only warnings and errors (stderr), through the same secret-masking filter."""
    from consumer import logs

    secrets = [settings.stripe_api_key.get_secret_value(), settings.shortener_token.get_secret_value()]
    logs.configure("WARNING", settings.log_format, secrets=secrets)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # connection errors are reported by the command


def with_timeout(uri: str, timeout_s: float = CLI_TIMEOUT_S) -> str:
    """``uri`` with a short server selection timeout, unless it sets one: commands fail fast."""
    if "serverselectiontimeoutms" in uri.lower():
        return uri
    option = f"serverSelectionTimeoutMS={int(timeout_s * 1000)}"
    if "?" in uri:
        return f"{uri}&{option}"
    scheme, _, rest = uri.partition("://")
    return f"{uri}?{option}" if "/" in rest else f"{scheme}://{rest}/?{option}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[str(value) if value is not None else "-" for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip(), file=out)


class Progress:
    """A ``\\r``-redrawn progress bar on stderr when it is a terminal; result lines go to stdout."""

    WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO | None = None, out: TextIO | None = None) -> None:
        self.total, self.done, self._label = total, 0, label
        self._stream = stream or sys.stderr
        self._out = out or sys.stdout
        self._tty = self._stream.isatty()
        self._draw()

    def line(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
        print(text, file=self._out, flush=True)
        self._draw()

    def advance(self) -> None:
        self.done += 1
        self._draw()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def _draw(self) -> None:
        if not self._tty or not self.total:
            return
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self.done}/{self.total}")
        self._stream.flush()


# --- topics create ---------------------------------------------------------------------------------


async def create_topics(settings: Settings) -> dict[str, str]:
    """Creates the requests and results topics; returns each topic's fate: created, exists or an error."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        topics = [settings.requests_topic, settings.results_topic]
        existing = set(await admin.list_topics())
        fate = {t: "exists" for t in topics if t in existing}
        wanted = [t for t in topics if t not in existing]
        if wanted:
            response = await admin.create_topics(
                [NewTopic(t, settings.topic_partitions, settings.topic_replication_factor) for t in wanted]
            )
            errors = {error[0]: error[1:] for error in response.topic_errors}
            for topic in wanted:
                code, *message = errors.get(topic, (0,))
                fate[topic] = (
                    "created"
                    if code == 0
                    else "exists"
                    if code == TOPIC_ALREADY_EXISTS
                    else (f"error {code}: {message[0] if message and message[0] else 'see the broker log'}")
                )
        return {t: fate[t] for t in topics}
    finally:
        await admin.close()


def topics_create(args: argparse.Namespace, settings: Settings) -> int:
    fates = asyncio.run(create_topics(settings))
    for topic, fate in fates.items():
        print(f"{topic}: {fate}")
    return EXIT_OK if all(f in ("created", "exists") for f in fates.values()) else EXIT_FAILED


# --- publish ---------------------------------------------------------------------------------------


FLAG_FIELDS: tuple[str, ...] = ("account", "contact", "currency", "days_until_due", "due_date", "items", "amount_items")
FLAG_FIELDS += ("correlation_id", "note_id", "description", "metadata", "event_id")


def request_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The request the flags describe; ``event_id`` is new unless ``--event-id`` names one."""
    missing = [f"--{name}" for name in ("account", "contact", "currency") if getattr(args, name) is None]
    missing += [] if args.items or args.amount_items else ["--item or --amount-item"]
    if missing:
        raise ValueError(f"without --file, give {', '.join(missing)}")
    body: dict[str, Any] = {
        "event_id": args.event_id or str(uuid.uuid4()),
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "account_id": args.account,
        "contact_id": args.contact,
        "currency": args.currency.lower(),
        "line_items": [*args.items, *args.amount_items],
    }
    optional = {
        "days_until_due": args.days_until_due,
        "due_date": args.due_date,
        "note_id": args.note_id,
        "correlation_id": args.correlation_id,
        "description": args.description,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if args.metadata:
        body["metadata"] = dict(args.metadata)
    return body


def publish(args: argparse.Namespace, settings: Settings) -> int:
    from domain.errors import PermanentError
    from domain.intake import parse_request

    flags_given = any(getattr(args, name) not in (None, []) for name in FLAG_FIELDS)
    try:
        if args.file is not None:
            if flags_given:
                raise ValueError("give either --file or the event's flags, not both")
            raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        else:
            raw = json.dumps(request_from_flags(args)).encode()
        request = parse_request(raw)
    except (OSError, ValueError) as problem:
        print(f"paylink publish: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except PermanentError as error:
        print(f"paylink publish: not sent: {error.reason}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    value = request.model_dump_json(exclude_none=True)
    if args.dry_run:
        print(value)
        return EXIT_OK
    asyncio.run(publish_request(settings, value.encode(), request.contact_id))
    print(request.event_id)
    print(f"published to {settings.requests_topic}", file=sys.stderr)
    return EXIT_OK


async def publish_request(settings: Settings, value: bytes, contact_id: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True)
    try:
        await producer.start()
        await producer.send_and_wait(settings.requests_topic, value, key=contact_id.encode())
    finally:
        await producer.stop()


# --- replay ----------------------------------------------------------------------------------------


def replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.replay import ReplaySelection, run_replay

    filtered = any(getattr(args, name) is not None for name in ("reason", "account", "since", "until"))
    if [bool(args.event_id), filtered, args.all].count(True) != 1:
        print(
            "paylink replay: choose by --event-id(s), or by filters (--reason/--account/--since/--until), or --all",
            file=sys.stderr,
        )
        return EXIT_USAGE
    selection = ReplaySelection(
        args.event_id,
        args.reason,
        args.account,
        args.since,
        args.until,
        args.limit,
        stale_after=timedelta(seconds=args.stale_after),
    )
    return asyncio.run(run_replay(settings, selection, dry_run=args.dry_run, concurrency=args.concurrency))


async def replay_requests(settings: Settings, event_ids: list[str]) -> int:
    """Replays ``event_ids``; returns the command's exit code (0 when every one ended created or was)."""
    from consumer.replay import ReplaySelection, run_replay

    return await run_replay(settings, ReplaySelection(event_ids=event_ids))
