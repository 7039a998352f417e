"""``paylink publish``: one PaymentLinkRequested, validated exactly like the worker validates it
(``domain.intake.validate_request`` on the one clock, due date included), then sent."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from consumer.cli.output import EXIT_OK, EXIT_USAGE
from consumer.runtime.bootstrap import CLOCK
from consumer.runtime.settings import Settings
from domain.errors import PermanentError
from domain.intake import validate_request

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
        "occurred_at": CLOCK.now().isoformat(),
        "account_id": args.account,
        "contact_id": args.contact,
        "currency": args.currency,  # any case: the request's own rule normalises it, as for a file
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
    flags_given = any(getattr(args, name) not in (None, []) for name in FLAG_FIELDS)
    try:
        if args.file is not None:
            if flags_given:
                raise ValueError("give either --file or the event's flags, not both")
            raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        else:
            raw = json.dumps(request_from_flags(args)).encode()
        request = validate_request(raw, CLOCK.now())  # the worker's checks, clock rules included
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
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True)
    try:
        await producer.start()
        await producer.send_and_wait(settings.requests_topic, value, key=contact_id.encode())
    finally:
        await producer.stop()
