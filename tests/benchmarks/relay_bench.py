"""Relay throughput against its two baselines, from a pre-filled outbox of the same entries.

- the bare relay loop: the relay's own store work with nothing else: read the oldest pending entries
  (same query, batch size and collection), produce them with the same idempotent producer (``acks=all``),
  wait for every acknowledgement, move them to ``outbox_published`` (insert, delete), again until empty;
- a raw producer sending the same messages with no store at all (the broker's ceiling).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import ASCENDING, AsyncMongoClient

from consumer.runtime.relay import headers_for
from consumer.runtime.settings import Settings
from domain.stored import OutboxEntry
from tests.benchmarks.common import Process, create_topics, log_dir, settings_for
from tests.benchmarks.pipeline import _event, _rate, _timestamps

BATCH = 2000


def _documents(events: list[tuple[str, str, bytes]], now: datetime) -> list[dict[str, Any]]:
    return [
        {"_id": event_id, "seq": n + 1, "key": key, "event_type": "PaymentLinkCreated", "payload": payload.decode(),
         "created_at": now, "published": False, "published_at": None}
        for n, (event_id, key, payload) in enumerate(events)
    ]  # fmt: skip


async def _fill(mongo: AsyncMongoClient[dict[str, Any]], database: str, documents: list[dict[str, Any]]) -> None:
    for start in range(0, len(documents), 1000):
        await mongo[database]["outbox"].insert_many(documents[start : start + 1000])


async def _drained(mongo: AsyncMongoClient[dict[str, Any]], database: str, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await mongo[database]["outbox"].count_documents({}) == 0:
                return
            await asyncio.sleep(0.1)


async def _bare_relay_rate(
    mongo: AsyncMongoClient[dict[str, Any]], settings: Settings, database: str, events: list[tuple[str, str, bytes]]
) -> float:
    topic = f"{settings.results_topic}.bare"
    admin_settings = settings.model_copy(update={"requests_topic": f"{topic}.in", "results_topic": topic})
    await create_topics(admin_settings)
    bare_db = f"{database}_bare"
    await _fill(mongo, bare_db, _documents(events, datetime.now(UTC)))
    outbox, published = mongo[bare_db]["outbox"], mongo[bare_db]["outbox_published"]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True, acks="all", linger_ms=2
    )
    await producer.start()
    try:
        while True:
            docs = await outbox.find({"published": False}).sort("seq", ASCENDING).limit(BATCH).to_list()
            if not docs:
                break
            acks = []
            for doc in docs:
                entry = OutboxEntry(doc["_id"], doc["seq"], doc["key"], doc["event_type"], b"", doc["created_at"])
                value = doc["payload"].encode()
                acks.append(await producer.send(topic, value, key=doc["key"].encode(), headers=headers_for(entry)))
            await asyncio.gather(*acks)
            now = datetime.now(UTC)
            await published.insert_many([{**doc, "published": True, "published_at": now} for doc in docs])
            await outbox.delete_many({"_id": {"$in": [doc["_id"] for doc in docs]}})
    finally:
        await producer.stop()
    await mongo.drop_database(bare_db)
    return _rate(await _timestamps(settings, topic, len(events)))


async def relay_rates(mongo: AsyncMongoClient[dict[str, Any]], entries: int) -> dict[str, Any]:
    """Publish rates from a pre-filled outbox: ``paylink relay``, the bare relay loop, a raw producer."""
    name = f"bench-relay-{uuid.uuid4().hex[:6]}"
    settings = settings_for(name)
    database = settings.mongodb_uri.rsplit("/", 1)[1]
    raw_topic = f"{name}.raw"
    await create_topics(settings, extra=[raw_topic])
    events = [_event(n) for n in range(entries)]
    now = datetime.now(UTC)
    # The raw baseline: an idempotent producer (acks=all, as the relay's) sending the same messages.
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True, acks="all", linger_ms=2
    )
    await producer.start()
    try:
        pending = []
        for event_id, key, payload in events:
            entry = OutboxEntry(event_id, 0, key, "PaymentLinkCreated", payload, now)
            pending.append(await producer.send(raw_topic, payload, key=key.encode(), headers=headers_for(entry)))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    raw_rate = _rate(await _timestamps(settings, raw_topic, entries))

    bare_rate = await _bare_relay_rate(mongo, settings, database, events)

    await _fill(mongo, database, _documents(events, now))
    relay = Process.paylink("relay", settings, log_dir() / f"{name}-relay.log")
    try:
        # Read the topic only once the outbox is empty, as for the bare loop: a consumer running beside
        # the relay would take the cores from it (the rate comes from the records' CreateTime anyway).
        await _drained(mongo, database, timeout_s=120)
    finally:
        relay.stop()
    stamps = await _timestamps(settings, settings.results_topic, entries)
    relay_rate = _rate(stamps)
    await mongo.drop_database(database)
    return {"entries": entries, "relay_per_s": round(relay_rate), "bare_per_s": round(bare_rate),
            "raw_per_s": round(raw_rate)}  # fmt: skip
