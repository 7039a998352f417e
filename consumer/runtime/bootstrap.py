"""The composition root: the one place that builds adapters from settings and wires them together.

``open_components`` owns every client (MongoDB, httpx, the Stripe and shortener aiohttp sessions) and closes them on
exit; the worker, the relay and ``paylink replay`` are built from it. ``open_stores`` gives the operator
commands the stores alone, after a ping, failing fast. Only this module imports concrete adapters: the
rest of ``consumer/`` sees them through ports (``domain.ports``, ``consumer.ports``). Tests reuse the
builders here with fakes passed in (``build_worker(components, FakeConsumer())``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure
from pymongo.uri_parser import parse_uri

from adapters.mongo.cancel_store import MongoCancelStore
from adapters.mongo.client import new_client
from adapters.mongo.crm import MongoCrmDirectory
from adapters.mongo.dead_letters import MongoDeadLetters
from adapters.mongo.lease import MongoLease
from adapters.mongo.lifecycle_store import MongoLifecycleStore
from adapters.mongo.outbox import MongoOutbox
from adapters.mongo.saga_store import MongoSagaStore
from adapters.mongo.setup import ensure_indexes
from adapters.shortener import HttpShortener, make_shortener_session
from adapters.stripe.billing import StripeBilling, make_stripe_client, make_stripe_session
from adapters.stripe.rate_limit import AccountRateLimiter
from adapters.stripe.webhooks import StripeWebhooks
from adapters.system import RandomIds, SystemClock
from consumer import metrics
from consumer.app.reconcile import OverdueScan, Reconciler
from consumer.app.replay import Replayer
from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from consumer.app.webhooks import WebhookIntake
from consumer.ports import (
    CancelArchive,
    DeadLetterArchive,
    Lease,
    LifecycleArchive,
    MessageConsumer,
    MessageProducer,
    OutboxArchive,
    OutboxReader,
    SagaQueries,
    Unreachable,
)
from consumer.runtime import tracing_http
from consumer.runtime.kafka import producer_renewal
from consumer.runtime.relay import Relay, RelayOptions
from consumer.runtime.scan import LEASE_INTERVALS, ScanLoop
from consumer.runtime.settings import Settings
from consumer.runtime.worker import Worker, WorkerOptions
from consumer.tracing import StepSpans
from domain.cancel import CancelPorts, LinkCanceller
from domain.lifecycle_service import LinkLifecycle
from domain.ports import Billing, CancelStore, Clock, LifecycleStore
from domain.saga import PaymentLinkSaga

Document = dict[str, Any]
RELAY_LEASE = "outbox-relay"
SCAN_LEASE = "overdue-scan"
CLOCK: Clock = SystemClock()  # the one clock of the processes
CLI_TIMEOUT_S = 5.0  # how long a command waits for MongoDB before it reports it unreachable


@dataclass
class Components:
    settings: Settings
    mongo: AsyncMongoClient[Document]
    database: AsyncDatabase[Document]
    crm_database: AsyncDatabase[Document]
    http: httpx.AsyncClient
    saga: PaymentLinkSaga
    sagas: SagaQueries
    outbox: OutboxReader
    dead_letters: DeadLetterArchive
    lifecycle: LinkLifecycle
    lifecycles: LifecycleStore
    billing: Billing
    canceller: LinkCanceller
    cancels: CancelStore


@dataclass
class Stores:
    """paylink's stores, for the operator commands."""

    sagas: SagaQueries
    outbox: OutboxArchive
    dead_letters: DeadLetterArchive
    relay_lease: Lease
    cancels: CancelArchive
    lifecycles: LifecycleArchive


def database_name(uri: str) -> str:
    return parse_uri(uri).get("database") or "paylink"


PROCESS_METRICS = {"worker": metrics.WORKER, "relay": metrics.RELAY, "webhooks": metrics.WEBHOOKS_PROCESS}


def metrics_registry(process: str) -> CollectorRegistry:
    """The registry ``process`` (worker, relay, webhooks) exports: its own metrics only."""
    return metrics.registry_of(PROCESS_METRICS[process])


def _observe_stripe(endpoint: str, status: str, seconds: float) -> None:
    metrics.STRIPE_REQUESTS.labels(endpoint, status).inc()
    metrics.STRIPE_SECONDS.labels(endpoint).observe(seconds)


@contextlib.asynccontextmanager
async def open_components(settings: Settings) -> AsyncIterator[Components]:
    mongo = new_client(settings.mongodb_uri, tz_aware=True)
    database = mongo[database_name(settings.mongodb_uri)]
    crm_database = mongo[settings.crm_database] if settings.crm_database else database
    limits = httpx.Limits(max_connections=settings.max_in_flight * 2, max_keepalive_connections=settings.max_in_flight)
    http = httpx.AsyncClient(limits=limits)
    traced = tracing_http.middlewares()  # empty unless tracing is on (configured before this)
    stripe_session = make_stripe_session(max_connections=settings.max_in_flight * 2, middlewares=traced)
    shortener_session = make_shortener_session(max_connections=settings.max_in_flight * 2, middlewares=traced)
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
            shortener_session,
            settings.shortener_url,
            settings.shortener_token.get_secret_value(),
            settings.shortener_timeout_s,
        )
        saga = PaymentLinkSaga(
            crm=MongoCrmDirectory(crm_database, settings.crm_account_cache_s),
            billing=billing,
            shortener=shortener,
            store=sagas,
            outbox=outbox,
            clock=CLOCK,
            ids=RandomIds(),
            items_per_call=settings.stripe_items_per_call,
            steps=StepSpans(),
            on_step=lambda step, seconds: metrics.STEP_SECONDS.labels(step.value).observe(seconds),
        )
        lifecycles = MongoLifecycleStore(database)
        lifecycle = LinkLifecycle(sagas=sagas, store=lifecycles, outbox=outbox, clock=CLOCK)
        cancels = MongoCancelStore(database)
        canceller = LinkCanceller(
            CancelPorts(
                sagas=sagas,
                cancels=cancels,
                lifecycles=lifecycles,
                lifecycle=lifecycle,
                billing=billing,
                outbox=outbox,
                clock=CLOCK,
                ids=RandomIds(),
            )
        )
        yield Components(
            settings,
            mongo,
            database,
            crm_database,
            http,
            saga,
            sagas,
            outbox,
            MongoDeadLetters(database),
            lifecycle,
            lifecycles,
            billing,
            canceller,
            cancels,
        )
    finally:
        await stripe_session.close()
        await shortener_session.close()
        await http.aclose()
        await mongo.close()


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_attempts, settings.retry_initial_s, settings.retry_max_s)


def build_replayer(components: Components) -> Replayer:
    return Replayer(
        components.saga,
        components.sagas,
        retry_policy(components.settings),
        CLOCK,
        canceller=components.canceller,
        cancels=components.cancels,
    )


# A webhook delivery waits for its retries (Stripe times deliveries out after some seconds and retries
# on its own), so the intake retries a store fault only briefly.
WEBHOOK_RETRY_ATTEMPTS = 3


def build_webhook_intake(components: Components) -> WebhookIntake:
    settings = components.settings
    reader = StripeWebhooks(settings.webhook_secrets(), settings.webhook_tolerance_s)
    policy = RetryPolicy(min(WEBHOOK_RETRY_ATTEMPTS, settings.retry_attempts), settings.retry_initial_s, 1.0)
    return WebhookIntake(reader, components.lifecycle, policy)


def build_reconciler(components: Components, clock: Clock = CLOCK) -> Reconciler:
    return Reconciler(
        sagas=components.sagas,
        lifecycles=components.lifecycles,
        billing=components.billing,
        lifecycle=components.lifecycle,
        policy=retry_policy(components.settings),
        clock=clock,
    )


def build_scan_loop(components: Components, clock: Clock = CLOCK) -> ScanLoop:
    """The overdue scan (tests pass a clock set past the due dates)."""
    settings = components.settings
    scan = OverdueScan(build_reconciler(components, clock), clock, batch=settings.overdue_scan_batch)
    length = timedelta(seconds=settings.overdue_scan_interval_s * LEASE_INTERVALS)
    lease = MongoLease(components.database, SCAN_LEASE, relay_owner(), length)
    return ScanLoop(scan, lease, settings.overdue_scan_interval_s)


def build_worker(components: Components, consumer: MessageConsumer) -> Worker:
    settings = components.settings
    handler = RequestHandler(components.saga, components.dead_letters, retry_policy(settings), components.canceller)
    options = WorkerOptions(
        topic=settings.requests_topic,
        max_in_flight=settings.max_in_flight,
        drain_timeout_s=settings.drain_timeout_s,
    )
    return Worker(consumer, handler, options)


def relay_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def relay_lease(database: AsyncDatabase[Document], owner: str, length: timedelta) -> Lease:
    return MongoLease(database, RELAY_LEASE, owner, length)


def build_relay(components: Components, producer: MessageProducer) -> Relay:
    settings = components.settings
    lease = relay_lease(components.database, relay_owner(), timedelta(seconds=settings.relay_lease_s))
    options = RelayOptions(
        topic=settings.results_topic,
        lease_length_s=settings.relay_lease_s,
        poll_interval_s=settings.relay_poll_ms / 1000,
        poll_min_interval_s=min(settings.relay_poll_min_ms, settings.relay_poll_ms) / 1000,
        batch_size=settings.relay_batch_size,
        retention=timedelta(seconds=settings.outbox_retention_s),
        purge_interval_s=settings.outbox_purge_interval_s,
    )

    return Relay(components.outbox, lease, producer, options, producer_renewal(settings))


def with_timeout(uri: str, timeout_s: float = CLI_TIMEOUT_S) -> str:
    """``uri`` with a short server selection timeout, unless it sets one: commands fail fast."""
    if "serverselectiontimeoutms" in uri.lower():
        return uri
    option = f"serverSelectionTimeoutMS={int(timeout_s * 1000)}"
    if "?" in uri:
        return f"{uri}&{option}"
    scheme, _, rest = uri.partition("://")
    return f"{uri}?{option}" if "/" in rest else f"{scheme}://{rest}/?{option}"


@contextlib.asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """paylink's stores, after a ping; ``Unreachable`` when MongoDB does not answer within ``CLI_TIMEOUT_S``."""
    client = new_client(settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=int(CLI_TIMEOUT_S * 1000))
    try:
        try:
            await client.admin.command("ping")
        except ConnectionFailure as error:
            raise Unreachable(f"MongoDB (PAYLINK_MONGODB_URI) did not answer: {type(error).__name__}") from None
        database = client[database_name(settings.mongodb_uri)]
        yield Stores(
            MongoSagaStore(database),
            MongoOutbox(database),
            MongoDeadLetters(database),
            relay_lease(database, "paylink-status", timedelta(seconds=1)),
            MongoCancelStore(database),
            MongoLifecycleStore(database),
        )
    finally:
        await client.close()
