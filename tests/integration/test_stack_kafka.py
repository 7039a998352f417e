"""The broker is real: an idempotent producer and a manually committing consumer go through it."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def test_idempotent_produce_then_consume_with_manual_commit(kafka_bootstrap: str, unique_name: str) -> None:
    topic, group = unique_name, f"{unique_name}-group"
    await create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"message-{i}".encode(), key=b"contact-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(30):
            while len(received) < 5:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    received.extend(r.value for r in records if r.value is not None)
        assert received == [f"message-{i}".encode() for i in range(5)]
        partition = TopicPartition(topic, 0)
        # Commit only the first three: a new consumer of the group must resume at the fourth.
        await consumer.commit({partition: 3})
    finally:
        await consumer.stop()

    resumed = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await resumed.start()
    try:
        async with asyncio.timeout(30):
            first = await resumed.getone()
        assert first.value == b"message-3"
        assert first.offset == 3
    finally:
        await resumed.stop()
