"""Relay throughput against a raw producer, and end-to-end latency through worker and relay."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from domain.saga_record import TIMESTAMP_FORMAT
from tests.benchmarks.common import (
    Process,
    configure_stripe,
    create_topics,
    log_dir,
    percentile,
    requests_for,
    reset_emulators,
    seed,
    settings_for,
)


def _event(n: int) -> tuple[str, str, bytes]:
    """An outbox entry's id, key and payload, shaped like a PaymentLinkCreated (about 900 bytes)."""
    event_id = str(uuid.uuid4())
    body = {
        "event_id": event_id, "event_type": "PaymentLinkCreated", "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(), "payment_link_id": str(uuid.uuid4()),
        "correlation_id": f"bench-{n}", "account_id": "acc-bench", "contact_id": f"con-{n % 97}",
        "stripe_account": "acct_bench", "customer_id": f"cus_{n:014d}", "invoice_id": f"in_{n:016d}",
        "invoice_number": f"BENCH-{n:06d}", "status": "open", "amount_due": 14800, "currency": "eur",
        "due_date": "2030-01-01", "hosted_invoice_url": f"https://invoice.stripe.test/i/acct_bench/in_{n:016d}",
        "invoice_pdf": f"https://invoice.stripe.test/i/acct_bench/in_{n:016d}/pdf",
        "short_url": f"http://127.0.0.1:12180/s/{n:08x}", "url": f"http://127.0.0.1:12180/s/{n:08x}",
    }  # fmt: skip
    return event_id, f"con-{n % 97}", json.dumps(body).encode()


async def _timestamps(settings: Settings, topic: str, expected: int, timeout_s: float = 120) -> list[int]:
    """Kafka CreateTime (ms) of the ``expected`` records of ``topic``, read from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        stamps: list[int] = []
        async with asyncio.timeout(timeout_s):
            while len(stamps) < expected:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                stamps.extend(record.timestamp for records in batch.values() for record in records)
        return stamps
    finally:
        await consumer.stop()


def _rate(stamps: list[int]) -> float:
    span_ms = max(stamps) - min(stamps)
    return (len(stamps) - 1) / max(span_ms, 1) * 1000


async def e2e_latency(
    mongo: AsyncMongoClient[dict[str, Any]], rate_per_s: float, duration_s: float, warmup: int = 5
) -> dict[str, Any]:
    """From request produced to result consumed, through a worker and a relay, at ``rate_per_s``."""
    name = f"bench-e2e-{uuid.uuid4().hex[:6]}"
    settings = settings_for(name)
    database = settings.mongodb_uri.rsplit("/", 1)[1]
    count = int(rate_per_s * duration_s)
    await reset_emulators()
    await configure_stripe(latency_ms=0)
    await create_topics(settings)
    tenants = await seed(mongo, settings, 4, contacts_per_tenant=-(-count // 4))
    bodies = requests_for(tenants, count)
    worker = Process.paylink("worker", settings, log_dir() / f"{name}-worker.log")
    relay = Process.paylink("relay", settings, log_dir() / f"{name}-relay.log")
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    stamps_sent: dict[str, float] = {}
    stamps: dict[str, dict[str, float]] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=0)
    try:
        await asyncio.gather(worker.wait_ready(), relay.wait_ready())
        await consumer.start()
        await producer.start()
        partitions = [TopicPartition(settings.results_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)

        async def collect() -> None:
            while len(received) < count:
                batch = await consumer.getmany(timeout_ms=100)
                moment, wall = time.perf_counter(), time.time()
                for records in batch.values():
                    for record in records:
                        link_id = json.loads(record.value)["payment_link_id"]
                        received.setdefault(link_id, moment)
                        stamps.setdefault(link_id, {"relay_sent": record.timestamp / 1000, "consumed": wall})

        collector = asyncio.create_task(collect())
        start = time.perf_counter()
        for n, body in enumerate(bodies):
            await asyncio.sleep(max(0.0, start + n / rate_per_s - time.perf_counter()))
            value = json.dumps(body).encode()
            sent[body["event_id"]] = time.perf_counter()
            stamps_sent[body["event_id"]] = time.time()
            await producer.send_and_wait(settings.requests_topic, value, key=body["contact_id"].encode())
        await asyncio.wait_for(collector, timeout=60)
    finally:
        await producer.stop()
        await consumer.stop()
        worker.stop()
        relay.stop()
    latencies = [(received[body["event_id"]] - sent[body["event_id"]]) * 1000 for body in bodies[warmup:]]
    measured = [body["event_id"] for body in bodies[warmup:]]
    stages = await _stages(mongo[database], measured, stamps_sent, stamps)
    await mongo.drop_database(database)
    return {
        "requests": count,
        "measured": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "stages_p50_ms": stages,
    }


async def _stages(
    database: Any, link_ids: list[str], sent: dict[str, float], stamps: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Where the end-to-end time goes (median per stage, wall clocks of this one machine): produce and
    consume the request (``intake``), run the saga (first to last save), append to the outbox, wait for the
    relay to pick the entry up and send it, and deliver it to the result consumer."""
    sagas = {d["_id"]: d async for d in database["sagas"].find({"_id": {"$in": link_ids}})}
    entries = {d["payload"] and json.loads(d["payload"])["payment_link_id"]: d
               async for d in database["outbox_published"].find({})}  # fmt: skip
    parts: dict[str, list[float]] = {"intake": [], "saga": [], "outbox_append": [], "relay_pickup": [], "delivery": []}
    for link_id in link_ids:
        saga, entry, stamp = sagas.get(link_id), entries.get(link_id), stamps.get(link_id)
        if not (saga and entry and stamp and link_id in sent):
            continue
        started, ended = _saga_time(saga["created_at"]), _saga_time(saga["updated_at"])
        appended = entry["created_at"].replace(tzinfo=UTC).timestamp()
        parts["intake"].append(started - sent[link_id])
        parts["saga"].append(ended - started)
        parts["outbox_append"].append(appended - ended)
        parts["relay_pickup"].append(stamp["relay_sent"] - appended)
        parts["delivery"].append(stamp["consumed"] - stamp["relay_sent"])
    return {name: round(percentile(values, 0.5) * 1000, 1) for name, values in parts.items()}


def _saga_time(text: str) -> float:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
