"""Building blocks for pipeline tests on the real stack: a tenant per test, requests, result collection.

Each test gets its own database, topics, consumer group and Stripe connected account, so tests never
see each other's data and need not reset the shared emulators.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo.asynchronous.database import AsyncDatabase

from consumer.runtime.bootstrap import build_relay, build_worker, open_components
from consumer.runtime.kafka import make_consumer, make_producer
from consumer.runtime.settings import LOCAL_STRIPE_TEST_KEY, Settings

STRIPE_HEADERS = {"Authorization": f"Bearer {LOCAL_STRIPE_TEST_KEY}"}


def settings_for(
    name: str, *, kafka: str, mongodb_uri: str, stripe_base: str, shortener_base: str, **overrides: Any
) -> Settings:
    base_uri = mongodb_uri.rsplit("/", 1)[0] if mongodb_uri.count("/") > 2 else mongodb_uri.rstrip("/")
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "requests_topic": f"{name}.requested",
        "results_topic": f"{name}.results",
        "consumer_group": f"{name}-worker",
        "mongodb_uri": f"{base_uri}/{name.replace('-', '_')}",
        "stripe_api_base": stripe_base,
        "shortener_url": f"{shortener_base}/shorten",
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        "relay_lease_s": 2.0,
        "drain_timeout_s": 5.0,
        "topic_partitions": 3,
    }
    values.update(overrides)
    return Settings(**values)


async def create_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(settings.requests_topic, num_partitions=settings.topic_partitions, replication_factor=1),
                NewTopic(settings.results_topic, num_partitions=settings.topic_partitions, replication_factor=1),
            ]
        )
    finally:
        await admin.close()


@dataclass
class Tenant:
    account_id: str
    stripe_account: str
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, str] = field(default_factory=dict)


async def seed_tenant(
    db: AsyncDatabase[dict[str, Any]],
    stripe_base: str,
    contacts: Mapping[str, Mapping[str, Any]],
    prices: dict[str, int] | None = None,
    connected: bool = True,
) -> Tenant:
    """An account, its contacts (name → document fields) and prices (name → unit amount) in Stripe."""
    tenant = Tenant(f"acc-{uuid.uuid4().hex[:8]}", f"acct_{uuid.uuid4().hex[:16]}")
    await db["accounts"].insert_one(
        {"_id": tenant.account_id, **({"stripe": {"account_id": tenant.stripe_account}} if connected else {})}
    )
    for name, fields in contacts.items():
        contact_id = f"con-{name}-{uuid.uuid4().hex[:6]}"
        await db["contacts"].insert_one({"_id": contact_id, "account_id": tenant.account_id, **fields})
        tenant.contacts[name] = {"_id": contact_id, **fields}
    async with httpx.AsyncClient(base_url=stripe_base, headers=STRIPE_HEADERS) as http:
        for name, amount in (prices or {}).items():
            headers = {"Stripe-Account": tenant.stripe_account}
            product = (await http.post("/v1/products", data={"name": name}, headers=headers)).json()
            price = await http.post(
                "/v1/prices",
                headers=headers,
                data={"product": product["id"], "unit_amount": str(amount), "currency": "eur"},
            )
            price.raise_for_status()
            tenant.prices[name] = price.json()["id"]
    return tenant


def request(tenant: Tenant, contact: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": f"corr-{uuid.uuid4().hex[:6]}",
        "account_id": tenant.account_id,
        "contact_id": tenant.contacts[contact]["_id"] if contact in tenant.contacts else contact,
        "currency": "eur",
        "days_until_due": 14,
        "line_items": [{"description": "Consulting", "amount": 12000, "quantity": 2}],
    }
    body.update(fields)
    return body


async def produce(settings: Settings, messages: Sequence[dict[str, Any] | bytes], key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for message in messages:
            value = message if isinstance(message, bytes) else json.dumps(message).encode()
            message_key = key
            if message_key is None and isinstance(message, dict) and isinstance(message.get("contact_id"), str):
                message_key = message["contact_id"].encode()
            await producer.send_and_wait(settings.requests_topic, value, key=message_key)
    finally:
        await producer.stop()


class ResultCollector:
    """Reads the results topic from the beginning, keyed by ``payment_link_id``; counts duplicates."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.results: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # every distinct event, in the order read
        self.records: list[Any] = []
        self.duplicates = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> ResultCollector:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.kafka_bootstrap_servers)
        await self._consumer.start()
        # The tests create the topic with ``topic_partitions`` partitions (create_topics).
        partitions = range(self._settings.topic_partitions)
        assigned = [TopicPartition(self._settings.results_topic, p) for p in partitions]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def wait_for(self, payment_link_ids: set[str], timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
        """The latest event of each of ``payment_link_ids``, once every one has one."""
        await self.wait_until(
            lambda _: payment_link_ids <= self.results.keys(), f"results of {len(payment_link_ids)} links", timeout_s
        )
        return {key: self.results[key] for key in payment_link_ids}

    async def wait_until(
        self, condition: Callable[[list[dict[str, Any]]], bool], what: str, timeout_s: float = 60.0
    ) -> None:
        """Reads on until ``condition(self.events)`` holds; fails with ``what`` after ``timeout_s``."""
        assert self._consumer is not None
        seen_event_ids = {event["event_id"] for event in self.events}
        try:
            async with asyncio.timeout(timeout_s):
                while not condition(self.events):
                    batch = await self._consumer.getmany(timeout_ms=200)
                    for records in batch.values():
                        for record in records:
                            self.records.append(record)
                            event = json.loads(record.value)
                            if event["event_id"] in seen_event_ids:
                                self.duplicates += 1
                                continue
                            seen_event_ids.add(event["event_id"])
                            self.results[event["payment_link_id"]] = event
                            self.events.append(event)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}") from None

    def of(self, payment_link_id: str) -> list[str]:
        """The event types published for one link, in order."""
        return [e["event_type"] for e in self.events if e["payment_link_id"] == payment_link_id]


@contextlib.asynccontextmanager
async def running_pipeline(settings: Settings, workers: int = 1, relays: int = 1) -> AsyncIterator[asyncio.Event]:
    """Worker(s) and relay(s) running in this event loop, on the real stack; stopped gracefully on exit."""
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []
        for _ in range(workers):
            components = await stack.enter_async_context(open_components(settings))
            consumer = make_consumer(settings)
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            tasks.append(asyncio.create_task(build_worker(components, consumer).run(stop)))
        for _ in range(relays):
            components = await stack.enter_async_context(open_components(settings))
            producer = make_producer(settings)
            await producer.start()
            stack.push_async_callback(producer.stop)
            tasks.append(asyncio.create_task(build_relay(components, producer).run(stop)))
        try:
            yield stop
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def stripe_objects(stripe_base: str, account: str, kind: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stripe_base) as http:
        response = await http.get("/_emulator/objects", params={"account": account, "type": kind})
        response.raise_for_status()
        body = response.json()
        return list(body["data"] if isinstance(body, dict) and "data" in body else body)


@contextlib.asynccontextmanager
async def stripe_latency(stripe_base: str, latency_ms: int) -> AsyncIterator[None]:
    """Every Stripe emulator response delayed by ``latency_ms`` while inside; restored to 0 after."""
    async with httpx.AsyncClient(base_url=stripe_base) as control:
        (await control.post("/_emulator/config", json={"latency_ms": latency_ms})).raise_for_status()
        try:
            yield
        finally:
            await control.post("/_emulator/config", json={"latency_ms": 0})
