"""The long-running processes: ``paylink worker``, ``paylink relay`` (with the overdue scan) and
``paylink webhooks``.

Both stop gracefully on SIGTERM/SIGINT: the worker stops fetching, lets in-flight sagas finish within
``drain_timeout_s``, commits and leaves the group; the relay finishes its batch and releases its lease
so a standby takes over at once.

Both keep trying to reach Kafka at start for ``KAFKA_START_WINDOW_S`` (with backoff, logged) before
giving up with "a dependency is unreachable" (exit 3): a process (re)started while the broker restarts
comes up with it instead of exiting into a crash loop whose back-off outlasts the broker's restart.
Once running, both ride out broker restarts on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from consumer import metrics
from consumer.runtime import logs
from consumer.runtime.bootstrap import (
    Components,
    build_relay,
    build_scan_loop,
    build_webhook_intake,
    build_worker,
    open_components,
)
from consumer.runtime.health import HealthServer, ReadinessCheck
from consumer.runtime.kafka import make_consumer, make_producer
from consumer.runtime.relay import Relay
from consumer.runtime.settings import Settings
from consumer.runtime.webhooks import build_app, serve

log = logging.getLogger("paylink")
SAMPLE_INTERVAL_S = 1.0  # gauges read from Kafka/MongoDB (lag, backlog) are refreshed this often
KAFKA_START_WINDOW_S = 60.0  # how long a starting worker/relay keeps trying to reach Kafka


class _KafkaClient(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


Client = TypeVar("Client", bound=_KafkaClient)


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
    stop = stop_on_signals()
    async with open_components(settings) as components:
        consumer = await started(lambda: make_consumer(settings), stop, "consumer")
        if consumer is None:
            return
        worker = build_worker(components, consumer)

        async def ready() -> str | None:
            await components.mongo.admin.command("ping")
            return None if worker.assigned else "no partitions assigned yet"

        log.info("worker started", extra={"topic": settings.requests_topic, "group": settings.consumer_group})
        try:
            async with _observed(metrics_port or settings.metrics_port, ready, _consumer_lag_sampler(consumer), stop):
                await worker.run(stop)
        finally:
            await consumer.stop()
        log.info("worker stopped")


async def run_relay(settings: Settings, metrics_port: int | None = None) -> None:
    stop = stop_on_signals()
    async with open_components(settings) as components:
        producer = await started(lambda: make_producer(settings), stop, "producer")
        if producer is None:
            return
        relay = build_relay(components, producer)

        async def ready() -> str | None:
            await components.mongo.admin.command("ping")
            metrics.LEASE_ACTIVE.set(1 if relay.stats.active else 0)
            backlog, _ = await components.outbox.backlog()
            metrics.OUTBOX_BACKLOG.set(backlog)
            return None

        log.info("relay started", extra={"topic": settings.results_topic})
        try:
            async with _observed(
                metrics_port or settings.metrics_port, ready, _outbox_sampler(components, relay), stop
            ):
                # The overdue scan runs beside the relay, under a lease of its own.
                await asyncio.gather(relay.run(stop), build_scan_loop(components).run(stop))
        finally:
            await relay.producer.stop()  # the relay may have replaced the one it started with
        log.info("relay stopped", extra={"published": relay.stats.published})


async def run_webhooks(settings: Settings) -> None:
    """Serves Stripe webhooks until SIGTERM/SIGINT (``consumer.runtime.webhooks``)."""
    stop = stop_on_signals()
    async with open_components(settings) as components:
        intake = build_webhook_intake(components)

        async def ready() -> str | None:
            await components.mongo.admin.command("ping")
            return None

        app = build_app(intake, ready)
        await serve(app, settings.webhooks_host, settings.webhooks_port, stop, settings.webhooks_drain_s)
    log.info("webhooks stopped")


async def started(make: Callable[[], Client], stop: asyncio.Event, what: str) -> Client | None:
    """A started Kafka client from ``make``; retries while the broker is unreachable (``KAFKA_START_WINDOW_S``,
    then the error propagates). None when ``stop`` is set meanwhile."""
    deadline = time.monotonic() + KAFKA_START_WINDOW_S
    delay = 0.25
    while True:
        client = make()
        try:
            await client.start()
            return client
        except KafkaError as error:
            with contextlib.suppress(Exception):
                await client.stop()  # a half-started client holds connections and tasks
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "Kafka unreachable at start; retrying",
                extra={"client": what, "error": repr(error), "retry_in_s": delay},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return None
        delay = min(delay * 2, 5.0)


@contextlib.asynccontextmanager
async def _observed(
    port: int | None, ready: ReadinessCheck, sample: Sample, stop: asyncio.Event
) -> AsyncIterator[None]:
    """While inside: the health/metrics endpoint on ``port`` (if any) and the metrics sampler."""
    health = HealthServer(port, ready) if port else None
    if health:
        await health.start()
    sampler = asyncio.create_task(_every(stop, sample))
    try:
        yield
    finally:
        await _cancel(sampler)
        if health:
            await health.stop()


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
