"""The Kafka clients of the processes, configured from the settings (aiokafka)."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumer.ports import MessageProducer
from consumer.runtime.relay import Renew
from consumer.runtime.settings import Settings


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    drain_ms = int(settings.drain_timeout_s * 1000)
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # The revoke callback may wait for in-flight sagas up to the drain deadline.
        rebalance_timeout_ms=drain_ms + 10_000,
        max_poll_interval_ms=max(300_000, drain_ms + 10_000),
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
    )


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
    )


def producer_renewal(settings: Settings) -> Renew:
    """How the relay replaces a producer the broker no longer accepts: start a new one, then stop the old."""

    async def renew(old: MessageProducer) -> MessageProducer:
        fresh = make_producer(settings)
        await fresh.start()
        with contextlib.suppress(Exception):  # the old one is broken anyway; it must not block the swap
            await old.stop()
        renewed: MessageProducer = fresh
        return renewed

    return renew
