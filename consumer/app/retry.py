"""The one retry policy of paylink: every use case that meets a transient fault retries through it.

``RetryPolicy.run`` retries an operation on ``RetryableError`` with exponential backoff and full jitter
(tenacity's ``wait_random_exponential``), never waiting less than the failed dependency asked for
(``RetryableError.retry_after_s``, e.g. Stripe's ``Retry-After`` on a 429). Each retry is logged
("transient failure; retrying", with the reason and the wait) and counted in
``paylink_retries_total{reason}``. When ``attempts`` run out, the last ``RetryableError`` propagates: the
caller decides what giving up means (the saga gives up retryably, keeping its progress).

``RetryPolicy.delay`` is the same backoff for loops that retry until something succeeds or the process
stops (the worker recording an outcome while MongoDB is down).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from consumer import metrics, tracing
from domain.errors import RetryableError

log = logging.getLogger("paylink.retry")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_s: float = 0.2
    max_s: float = 5.0
    # How waiting is done: tests pass a recorder to see every wait without spending it.
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False, repr=False)

    async def run(self, operation: Callable[[], Awaitable[T]], context: Mapping[str, object]) -> T:
        """``operation()``, retried on ``RetryableError`` up to ``attempts`` times in all; ``context``
        (ids of what is being retried) goes into every retry's log record."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self.attempts),
            wait=self.wait,
            before_sleep=lambda state: _log_retry(context, state),
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await operation()
        raise AssertionError("tenacity always returns or raises")  # pragma: no cover

    def wait(self, state: RetryCallState) -> float:
        """The backoff before the next attempt, but never shorter than the error's ``retry_after_s``."""
        backoff = wait_random_exponential(multiplier=self.initial_s, max=self.max_s)(state)
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after_s if isinstance(error, RetryableError) else None
        return max(backoff, hint or 0.0)

    def delay(self, retries: int) -> float:
        """The jittered wait before retry number ``retries`` (1, 2, …) of an unbounded retry loop."""
        ceiling = min(self.initial_s * 2 ** max(0, retries - 1), self.max_s)
        return random.uniform(0, ceiling)


def _log_retry(context: Mapping[str, object], state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    reason = error.reason.value if isinstance(error, RetryableError) else "unknown"
    metrics.RETRIES.labels(reason).inc()
    tracing.event("retry", {"attempt": state.attempt_number, "reason": reason, "retry_in_s": state.upcoming_sleep})
    log.info(
        "transient failure; retrying",
        extra={
            **context,
            "attempt": state.attempt_number,
            "reason": reason,
            "error": error.message if isinstance(error, RetryableError) else repr(error),
            "retry_in_s": round(state.upcoming_sleep, 3),
        },
    )
