"""The composition root: the one place that builds adapters from settings and wires them together.

``open_components`` owns every client (MongoDB, httpx, Kafka) and closes them on exit. The worker and
the relay are built from it; tests build them the same way, pointed at the local stack by settings.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.uri_parser import parse_uri

from adapters.mongo.crm import MongoCrmDirectory
from adapters.mongo.dead_letters import MongoDeadLetters
from adapters.mongo.lease import MongoLease
from adapters.mongo.outbox import MongoOutbox
from adapters.mongo.saga_store import MongoSagaStore
from adapters.mongo.setup import ensure_indexes
from adapters.shortener import HttpShortener
from adapters.stripe.billing import StripeBilling, make_stripe_client, make_stripe_session
from adapters.stripe.rate_limit import AccountRateLimiter
from consumer import metrics
from consumer.processing import RequestHandler, RetryPolicy
from consumer.relay import Relay, RelayOptions
from consumer.settings import Settings
from consumer.worker import Worker, WorkerOptions
from domain.saga import PaymentLinkSaga

Document = dict[str, Any]
RELAY_LEASE = "outbox-relay"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator:
    def new_id(self) -> str:
        return str(uuid.uuid4())


@dataclass
class Components:
    settings: Settings
    mongo: AsyncMongoClient[Document]
    database: AsyncDatabase[Document]
    crm_database: AsyncDatabase[Document]
    http: httpx.AsyncClient
    saga: PaymentLinkSaga
    sagas: MongoSagaStore
    outbox: MongoOutbox
    dead_letters: MongoDeadLetters


def database_name(uri: str) -> str:
    return parse_uri(uri).get("database") or "paylink"


def _observe_stripe(endpoint: str, status: str, seconds: float) -> None:
    metrics.STRIPE_REQUESTS.labels(endpoint, status).inc()
    metrics.STEP_SECONDS.labels(endpoint).observe(seconds)


@contextlib.asynccontextmanager
async def open_components(settings: Settings) -> AsyncIterator[Components]:
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    database = mongo[database_name(settings.mongodb_uri)]
    crm_database = mongo[settings.crm_database] if settings.crm_database else database
    limits = httpx.Limits(max_connections=settings.max_in_flight * 2, max_keepalive_connections=settings.max_in_flight)
    http = httpx.AsyncClient(limits=limits)
    stripe_session = make_stripe_session(max_connections=settings.max_in_flight * 2)
    try:
        await ensure_indexes(database)
        sagas, outbox = MongoSagaStore(database), MongoOutbox(database)
        stripe_client = make_stripe_client(
            stripe_session,
            settings.stripe_api_key.get_secret_value(),
            settings.stripe_api_base,
            settings.stripe_timeout_s,
        )
        billing = StripeBilling(
            stripe_client,
            AccountRateLimiter(settings.stripe_rate_limit_per_s, settings.stripe_rate_burst),
            observe=_observe_stripe,
        )
        shortener = HttpShortener(
            http,
            settings.shortener_url,
            settings.shortener_token.get_secret_value(),
            settings.shortener_timeout_s,
        )
        saga = PaymentLinkSaga(
            crm=MongoCrmDirectory(crm_database),
            billing=billing,
            shortener=shortener,
            store=sagas,
            outbox=outbox,
            clock=SystemClock(),
            ids=UuidGenerator(),
            items_per_call=settings.stripe_items_per_call,
        )
        yield Components(settings, mongo, database, crm_database, http, saga, sagas, outbox, MongoDeadLetters(database))
    finally:
        await stripe_session.close()
        await http.aclose()
        await mongo.close()


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


def build_worker(components: Components, consumer: AIOKafkaConsumer) -> Worker:
    settings = components.settings
    handler = RequestHandler(
        components.saga,
        components.dead_letters,
        RetryPolicy(settings.retry_attempts, settings.retry_initial_s, settings.retry_max_s),
    )
    options = WorkerOptions(
        topic=settings.requests_topic,
        max_in_flight=settings.max_in_flight,
        drain_timeout_s=settings.drain_timeout_s,
    )
    return Worker(consumer, handler, options)


def relay_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_relay(components: Components, producer: AIOKafkaProducer) -> Relay:
    settings = components.settings
    lease = MongoLease(components.database, RELAY_LEASE, relay_owner(), timedelta(seconds=settings.relay_lease_s))
    options = RelayOptions(
        topic=settings.results_topic,
        lease_length_s=settings.relay_lease_s,
        poll_interval_s=settings.relay_poll_ms / 1000,
        batch_size=settings.relay_batch_size,
        retention=timedelta(seconds=settings.outbox_retention_s),
        purge_interval_s=settings.outbox_purge_interval_s,
    )
    return Relay(components.outbox, lease, producer, options)
