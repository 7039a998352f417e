"""``paylink topics create``: the requests and results topics, idempotently."""

from __future__ import annotations

import argparse
import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumer.cli.output import EXIT_FAILED, EXIT_OK
from consumer.runtime.settings import Settings

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


async def create_topics(settings: Settings) -> dict[str, str]:
    """Creates the requests and results topics; returns each topic's fate: created, exists or an error."""
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
