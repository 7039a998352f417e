"""How a process waits for its dependencies at start (``paylink worker``, ``relay``, ``webhooks``).

A process (re)started while MongoDB or the broker restarts comes up with them instead of exiting into a
crash loop whose back-off outlasts the restart. So each dependency is tried again and again (short
attempts, backoff up to 1 s) until ``PAYLINK_START_WAIT_S`` has passed since the process started, one
deadline for all of them; then the process exits 3 ("a dependency is unreachable"). Every
``PAYLINK_START_LOG_INTERVAL_S`` a warning names what is being waited for, and ``/readyz`` answers
"waiting for <dependency>" meanwhile (``/healthz`` is served from the first second).

Only the wait is bounded here: each attempt is short on its own (MongoDB's ping has a 1 s server
selection timeout, see ``wait_for_mongodb``; aiokafka fails a bootstrap at once when no broker
listens), so the deadline holds to about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from consumer.ports import Unreachable
from consumer.runtime.health import Readiness
from consumer.runtime.settings import Settings

log = logging.getLogger("paylink")
T = TypeVar("T")
MAX_BACKOFF_S = 1.0
START_PING_TIMEOUT_MS = 1000  # one MongoDB attempt; PyMongo's default server selection waits 30 s


class StartWait:
    """The start deadline of one process, shared by every dependency it waits for."""

    def __init__(
        self, wait_s: float, log_every_s: float, stop: asyncio.Event, readiness: Readiness | None = None
    ) -> None:
        self.wait_s = wait_s
        self.log_every_s = log_every_s
        self.stop = stop
        self.readiness = readiness or Readiness()
        self._started = time.monotonic()

    @classmethod
    def of(cls, settings: Settings, stop: asyncio.Event, readiness: Readiness) -> StartWait:
        return cls(settings.start_wait_s, settings.start_log_interval_s, stop, readiness)

    async def until(
        self, what: str, attempt: Callable[[], Awaitable[T]], errors: tuple[type[Exception], ...]
    ) -> T | None:
        """``attempt()``'s result once it succeeds; None when ``stop`` is set meanwhile; ``Unreachable``
        past the deadline. ``errors`` are the failures that mean "not there yet"."""
        self.readiness.waiting_for = what
        delay, logged_at = 0.1, -float("inf")
        while True:
            try:
                return await attempt()
            except errors as error:
                waited = time.monotonic() - self._started
                if waited >= self.wait_s:
                    raise Unreachable(
                        f"{what} did not answer within {self.wait_s:g} s (PAYLINK_START_WAIT_S): {type(error).__name__}"
                    ) from None
                if waited - logged_at >= self.log_every_s:
                    logged_at = waited
                    log.warning(
                        f"waiting for {what}",
                        extra={
                            "waiting_for": what,
                            "waited_s": round(waited, 1),
                            "gives_up_in_s": round(self.wait_s - waited, 1),
                            "error": f"{type(error).__name__}: {error}"[:300],
                        },
                    )
                delay = min(delay * 2, MAX_BACKOFF_S, max(0.01, self.wait_s - waited))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            if self.stop.is_set():
                return None


class _KafkaClient(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


Client = TypeVar("Client", bound=_KafkaClient)


async def started(make: Callable[[], Client], wait: StartWait, what: str) -> Client | None:
    """A started Kafka client from ``make``, waiting for the broker (``StartWait``); None on ``stop``."""

    async def attempt() -> Client:
        client = make()
        try:
            await client.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await client.stop()  # a half-started client holds connections and tasks
            raise
        return client

    return await wait.until(what, attempt, (KafkaError,))


async def wait_for_mongodb(settings: Settings, wait: StartWait) -> bool:
    """Pings MongoDB until it answers (True), ``wait``'s deadline passes (``Unreachable``) or it stops (False)."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=START_PING_TIMEOUT_MS, connectTimeoutMS=START_PING_TIMEOUT_MS
    )
    try:
        return await wait.until("MongoDB", lambda: client.admin.command("ping"), (PyMongoError,)) is not None
    finally:
        await client.close()
