"""The long-running processes: ``paylink worker`` and ``paylink relay``.

Both stop gracefully on SIGTERM/SIGINT: the worker stops fetching, lets in-flight sagas finish within
``drain_timeout_s``, commits and leaves the group; the relay finishes its batch and releases its lease
so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from consumer import logs, metrics
from consumer.bootstrap import build_relay, build_worker, make_consumer, make_producer, open_components
from consumer.health import HealthServer
from consumer.settings import Settings

log = logging.getLogger("paylink")


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
        consumer = make_consumer(settings)
        await consumer.start()
        worker = build_worker(components, consumer)

        async def ready() -> str | None:
            await components.mongo.admin.command("ping")
            return None if worker.assigned else "no partitions assigned yet"

        health = await _start_health(metrics_port or settings.metrics_port, ready)
        log.info("worker started", extra={"topic": settings.requests_topic, "group": settings.consumer_group})
        try:
            await worker.run(stop)
        finally:
            await consumer.stop()
            if health:
                await health.stop()
        log.info("worker stopped")


async def run_relay(settings: Settings, metrics_port: int | None = None) -> None:
    stop = stop_on_signals()
    async with open_components(settings) as components:
        producer = make_producer(settings)
        await producer.start()
        relay = build_relay(components, producer)

        async def ready() -> str | None:
            await components.mongo.admin.command("ping")
            metrics.LEASE_ACTIVE.set(1 if relay.stats.active else 0)
            backlog, _ = await components.outbox.backlog()
            metrics.OUTBOX_BACKLOG.set(backlog)
            return None

        health = await _start_health(metrics_port or settings.metrics_port, ready)
        log.info("relay started", extra={"topic": settings.results_topic})
        try:
            await relay.run(stop)
        finally:
            await producer.stop()
            if health:
                await health.stop()
        log.info("relay stopped", extra={"published": relay.stats.published})


async def _start_health(port: int | None, ready: object) -> HealthServer | None:
    if not port:
        return None
    server = HealthServer(port, ready)  # type: ignore[arg-type]
    await server.start()
    return server
