"""A tiny HTTP endpoint on the metrics port: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

``/healthz`` answers 200 while the event loop runs (a stuck loop cannot answer). ``/readyz`` answers 200
only when the process's readiness check passes (worker: Kafka and MongoDB reachable and partitions
assigned; relay: MongoDB reachable and the lease state known), else 503 with the reason.
Plain asyncio streams: one more web framework is not worth three routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger("paylink.health")

ReadinessCheck = Callable[[], Awaitable[str | None]]  # None when ready, else why not


class HealthServer:
    def __init__(
        self, port: int, ready: ReadinessCheck, registry: CollectorRegistry = REGISTRY, host: str = "0.0.0.0"
    ) -> None:
        self._port = port
        self._host = host
        self._ready = ready
        self._registry = registry
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("metrics and health endpoints listening", extra={"port": self._port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            status, content_type, body = await self._route(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            try:
                reason = await asyncio.wait_for(self._ready(), timeout=5)
            except Exception as error:  # a failing check means "not ready", never a crash
                reason = f"readiness check failed: {type(error).__name__}"
            if reason is None:
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", f"not ready: {reason}\n".encode()
        return "404 Not Found", "text/plain", b"not found\n"
