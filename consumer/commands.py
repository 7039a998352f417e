"""Operator commands of ``paylink``: topics, publish, replay."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from consumer.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def register(commands: Any) -> None:
    topics = commands.add_parser("topics", help="manage the Kafka topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topic_commands.add_parser("create", help="create the requests and results topics (idempotent)")
    create.set_defaults(run=_topics_create)

    publish = commands.add_parser("publish", help="send a PaymentLinkRequested (validated first)")
    publish.add_argument("--file", type=Path, required=True, help="JSON file holding the event ('-' = stdin)")
    publish.set_defaults(run=_publish)

    replay = commands.add_parser("replay", help="re-run failed requests, resuming their sagas")
    replay.add_argument("--event-id", action="append", default=[], help="request event_id (repeatable)")
    replay.set_defaults(run=_replay)


async def create_topics(settings: Settings) -> list[str]:
    """Creates the requests and results topics that do not exist yet; returns the ones created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (settings.requests_topic, settings.results_topic) if t not in existing]
        if wanted:
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        num_partitions=settings.topic_partitions,
                        replication_factor=settings.topic_replication_factor,
                    )
                    for t in wanted
                ]
            )
        return wanted
    finally:
        await admin.close()


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    created = asyncio.run(create_topics(settings))
    for topic in (settings.requests_topic, settings.results_topic):
        print(f"{topic}: {'created' if topic in created else 'exists'}")
    return EXIT_OK


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from domain.errors import PermanentError
    from domain.intake import parse_request

    raw = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    try:
        request = parse_request(raw)
    except PermanentError as error:
        print(f"not sent: {error.reason}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    asyncio.run(publish_request(settings, request.model_dump_json().encode(), request.contact_id))
    print(json.dumps({"published": request.event_id, "topic": settings.requests_topic}))
    return EXIT_OK


async def publish_request(settings: Settings, value: bytes, contact_id: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(settings.requests_topic, value, key=contact_id.encode())
    finally:
        await producer.stop()


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if not args.event_id:
        print("name at least one --event-id", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(replay_requests(settings, args.event_id))


async def replay_requests(settings: Settings, event_ids: list[str]) -> int:
    """Re-opens each failed saga and runs it to its new result (published by the relay)."""
    from consumer.bootstrap import open_components
    from domain.errors import ReplayRefusedError, RetryableError
    from domain.events import PaymentLinkCreated

    failures = 0
    async with open_components(settings) as components:
        for event_id in event_ids:
            try:
                result = await components.saga.replay(event_id)
            except ReplayRefusedError as refused:
                print(f"{event_id}: skipped ({refused})")
                continue
            except RetryableError as error:
                failures += 1
                print(f"{event_id}: still failing transiently ({error.message}); try again later")
                continue
            outcome = "created" if isinstance(result, PaymentLinkCreated) else f"failed: {result.reason}"
            print(f"{event_id}: {outcome}")
    return EXIT_FAILED if failures else EXIT_OK
