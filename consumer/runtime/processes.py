"""The long-running processes: ``paylink worker``, ``paylink relay`` (with the overdue scan) and
``paylink webhooks``.

Both stop gracefully on SIGTERM/SIGINT: the worker stops fetching, lets in-flight sagas finish within
``drain_timeout_s``, commits and leaves the group; the relay finishes its batch and releases its lease
so a standby takes over at once.

At start each serves /healthz at once and waits for MongoDB, then Kafka, up to ``PAYLINK_START_WAIT_S``
(``consumer.runtime.startup``: logged every few seconds, /readyz says what is awaited) before giving up
with "a dependency is unreachable" (exit 3). Once running, they ride out broker restarts on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from consumer import metrics
from consumer.runtime import logs
from consumer.runtime.bootstrap import (
    Components,
    build_relay,
    build_scan_loop,
    build_webhook_intake,
    build_worker,
    metrics_registry,
    open_components,
)
from consumer.runtime.health import HealthServer, Readiness
from consumer.runtime.kafka import make_consumer, make_producer
from consumer.runtime.relay import Relay
from consumer.runtime.settings import Settings
from consumer.runtime.startup import StartWait, started, wait_for_mongodb
from consumer.runtime.webhooks import IntakeSlot, build_app, serving

log = logging.getLogger("paylink")
SAMPLE_INTERVAL_S = 1.0  # gauges read from Kafka/MongoDB (lag, backlog) are refreshed this often


def configure_logging(settings: Settings) -> None:
    logs.configure(
        settings.log_level,
        settings.log_format,
        secrets=[settings.stripe_api_key.get_secret_value(), settings.shortener_token.get_secret_value()],
    )


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(settings: Settings, metrics_port: int | None = None) -> None:
    stop, readiness = stop_on_signals(), Readiness()
    wait = StartWait.of(settings, stop, readiness)
    async with _health(metrics_port or settings.metrics_port, readiness, metrics_registry("worker")):
        if not await wait_for_mongodb(settings, wait):
            return
        async with open_components(settings) as components:
            consumer = await started(lambda: make_consumer(settings), wait, "Kafka")
            if consumer is None:
                return
            worker = build_worker(components, consumer)

            async def ready() -> str | None:
                await components.mongo.admin.command("ping")
                return None if worker.assigned else "no partitions assigned yet"

            readiness.use(ready)
            log.info("worker started", extra={"topic": settings.requests_topic, "group": settings.consumer_group})
            try:
                async with _sampling(_consumer_lag_sampler(consumer), stop):
                    await worker.run(stop)
            finally:
                await consumer.stop()
    log.info("worker stopped")


async def run_relay(settings: Settings, metrics_port: int | None = None) -> None:
    stop, readiness = stop_on_signals(), Readiness()
    wait = StartWait.of(settings, stop, readiness)
    async with _health(metrics_port or settings.metrics_port, readiness, metrics_registry("relay")):
        if not await wait_for_mongodb(settings, wait):
            return
        async with open_components(settings) as components:
            producer = await started(lambda: make_producer(settings), wait, "Kafka")
            if producer is None:
                return
            relay = build_relay(components, producer)

            async def ready() -> str | None:
                await components.mongo.admin.command("ping")
                metrics.LEASE_ACTIVE.set(1 if relay.stats.active else 0)
                backlog, _ = await components.outbox.backlog()
                metrics.OUTBOX_BACKLOG.set(backlog)
                return None

            readiness.use(ready)
            log.info("relay started", extra={"topic": settings.results_topic})
            try:
                async with _sampling(_outbox_sampler(components, relay), stop):
                    # The overdue scan runs beside the relay, under a lease of its own.
                    await asyncio.gather(relay.run(stop), build_scan_loop(components).run(stop))
            finally:
                await relay.producer.stop()  # the relay may have replaced the one it started with
            log.info("relay stopped", extra={"published": relay.stats.published})


async def run_webhooks(settings: Settings) -> None:
    """Serves Stripe webhooks until SIGTERM/SIGINT (``consumer.runtime.webhooks``); its port answers
    /healthz from the first second, deliveries get 503 until MongoDB answers."""
    stop, readiness, slot = stop_on_signals(), Readiness(), IntakeSlot()
    app = build_app(slot, readiness, metrics_registry("webhooks"))
    async with serving(app, settings.webhooks_host, settings.webhooks_port, settings.webhooks_drain_s):
        if not await wait_for_mongodb(settings, StartWait.of(settings, stop, readiness)):
            return
        async with open_components(settings) as components:
            slot.intake = build_webhook_intake(components)

            async def ready() -> str | None:
                await components.mongo.admin.command("ping")
                return None

            readiness.use(ready)
            await stop.wait()
    log.info("webhooks stopped")


@contextlib.asynccontextmanager
async def _health(port: int | None, readiness: Readiness, registry: CollectorRegistry) -> AsyncIterator[None]:
    """While inside: the health/metrics endpoint on ``port`` (if any), from before any dependency answers."""
    health = HealthServer(port, readiness, registry) if port else None
    if health:
        await health.start()
    try:
        yield
    finally:
        if health:
            await health.stop()


@contextlib.asynccontextmanager
async def _sampling(sample: Sample, stop: asyncio.Event) -> AsyncIterator[None]:
    """While inside: ``sample`` every ``SAMPLE_INTERVAL_S``."""
    sampler = asyncio.create_task(_every(stop, sample))
    try:
        yield
    finally:
        await _cancel(sampler)


Sample = Callable[[], Awaitable[None]]


async def _every(stop: asyncio.Event, sample: Sample) -> None:
    """Runs ``sample`` every ``SAMPLE_INTERVAL_S`` until ``stop``; a failed sample is skipped, never fatal."""
    while not stop.is_set():
        metrics.ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
        try:
            await asyncio.wait_for(sample(), timeout=5 * SAMPLE_INTERVAL_S)
        except Exception as error:  # metrics must never take the process down
            log.debug("metrics sample failed", extra={"error": repr(error)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SAMPLE_INTERVAL_S)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _consumer_lag_sampler(consumer: AIOKafkaConsumer) -> Sample:
    """``paylink_consumer_lag{partition}``: end offset - committed offset of each assigned partition."""
    reported: set[str] = set()

    async def sample() -> None:
        assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        ends = await consumer.end_offsets(assigned) if assigned else {}
        current: set[str] = set()
        for tp in assigned:
            committed = await consumer.committed(tp)
            start = committed if committed is not None else (await consumer.beginning_offsets([tp]))[tp]
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, ends[tp] - start))
            current.add(str(tp.partition))
        for gone in reported - current:  # revoked: its lag is another worker's to report
            metrics.CONSUMER_LAG.remove(gone)
        reported.clear()
        reported.update(current)

    return sample


def _outbox_sampler(components: Components, relay: Relay) -> Sample:
    """``paylink_outbox_backlog``, ``paylink_outbox_oldest_age_seconds`` and the lease gauge."""

    async def sample() -> None:
        metrics.LEASE_ACTIVE.set(1 if relay.stats.active else 0)
        backlog, oldest = await components.outbox.backlog()
        metrics.OUTBOX_BACKLOG.set(backlog)
        metrics.OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)

    return sample
