"""The health and metrics endpoints: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

``/healthz`` answers 200 while the event loop runs (a stuck loop cannot answer): from the process's first
second, while it still waits for its dependencies. ``/readyz`` answers 200 only when the process's
readiness check passes (worker: Kafka and MongoDB reachable and partitions assigned; relay: MongoDB
reachable and the lease state known; webhooks: MongoDB reachable), else 503 with the reason, such as
"waiting for MongoDB" during start.

aiohttp's server, the one HTTP server stack of paylink (``paylink webhooks`` adds these routes to its
own application): no hand-parsed HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("paylink.health")

ReadinessCheck = Callable[[], Awaitable[str | None]]  # None when ready, else why not
READINESS_TIMEOUT_S = 2.0  # a check slower than this is "not ready" (a probe's own timeout is often 1-3 s)


class Readiness:
    """The readiness of a starting process: "waiting for X" until ``use`` installs the running check."""

    def __init__(self) -> None:
        self.waiting_for = "starting"
        self._check: ReadinessCheck | None = None

    def use(self, check: ReadinessCheck) -> None:
        self._check = check

    async def __call__(self) -> str | None:
        if self._check is None:
            return f"waiting for {self.waiting_for}"
        return await self._check()


def add_health_routes(app: web.Application, ready: ReadinessCheck, registry: CollectorRegistry) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            problem = await asyncio.wait_for(ready(), timeout=READINESS_TIMEOUT_S)
        except Exception as error:  # a failing check means "not ready", never a crash
            problem = f"readiness check failed: {type(error).__name__}"
        if problem:
            return web.Response(status=503, text=f"not ready: {problem}\n")
        return web.Response(text="ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


class HealthServer:
    """The endpoints on their own port (worker, relay); ``start`` binds at once, before any dependency."""

    def __init__(self, port: int, ready: ReadinessCheck, registry: CollectorRegistry, host: str = "0.0.0.0") -> None:
        self._port = port
        self._host = host
        app = web.Application()
        add_health_routes(app, ready, registry)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("metrics and health endpoints listening", extra={"port": self._port})

    async def stop(self) -> None:
        await self._runner.cleanup()
