"""What the worker does with one request message, until its outcome is durable.

- A message that does not validate is dead-lettered (raw bytes kept) and, when an ``event_id`` can be
  recovered, answered with ``PaymentLinkFailed`` (``invalid_event``/``invalid_line_items``/…).
- A valid request runs the saga; transient faults are retried with exponential backoff and full jitter
  (tenacity, ``retry_attempts`` attempts); when they run out the saga gives up with
  ``PaymentLinkFailed(retryable=true)`` and keeps its progress for ``paylink replay``.
- A duplicate of a finished request re-appends its stored result (nothing new is published); it is
  counted in ``paylink_duplicates_total``, not again in ``paylink_sagas_total``.
- If even recording the outcome fails (MongoDB down), the whole message is retried with backoff until it
  succeeds or the worker stops: its offset stays uncommitted, so nothing is lost.
- An unexpected exception (a bug) never stops the worker: the message is dead-lettered with
  ``internal_error`` and the saga gives up retryably, so it can be replayed once the bug is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from consumer import metrics
from domain.errors import PermanentError, Reason, RetryableError, excerpt
from domain.events import PaymentLinkCreated, PaymentLinkRequested
from domain.intake import parse_request, recover_identity
from domain.saga import PaymentLinkSaga, SagaOutcome

log = logging.getLogger("paylink.processing")


class DeadLetterSink(Protocol):
    async def record(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes,
        reason: str,
        message: str,
        event_id: str | None = None,
        account_id: str | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_s: float = 0.2
    max_s: float = 5.0


@dataclass
class RequestJob:
    topic: str
    partition: int
    offset: int
    raw: bytes
    request: PaymentLinkRequested | None
    error: PermanentError | None
    serial_key: Hashable | None


class RequestHandler:
    def __init__(self, saga: PaymentLinkSaga, dead_letters: DeadLetterSink, policy: RetryPolicy) -> None:
        self._saga = saga
        self._dead_letters = dead_letters
        self._policy = policy

    def prepare(self, record: Any) -> RequestJob:
        raw = record.value if isinstance(record.value, bytes) else b""
        metrics.MESSAGES_CONSUMED.labels(record.topic).inc()
        request: PaymentLinkRequested | None = None
        error: PermanentError | None = None
        try:
            request = parse_request(raw)
        except PermanentError as problem:
            error = problem
        key: Hashable | None = (request.account_id, request.contact_id) if request else record.key
        return RequestJob(record.topic, record.partition, record.offset, raw, request, error, key)

    async def handle(self, job: RequestJob) -> None:
        metrics.IN_FLIGHT.inc()
        try:
            await self._until_durable(job)
        finally:
            metrics.IN_FLIGHT.dec()

    async def _until_durable(self, job: RequestJob) -> None:
        delay = self._policy.initial_s
        bug: str | None = None  # set once handling failed unexpectedly: then only the dead letter is owed
        while True:
            try:
                if bug is None:
                    await self._handle_once(job)
                else:
                    await self._dead_letter(job, Reason.INTERNAL_ERROR, bug)
                return
            except RetryableError as error:
                log.warning(
                    "could not record the outcome; retrying the message",
                    extra={**_identity(job), "error": error.message, "retry_in_s": round(delay, 3)},
                )
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, self._policy.max_s)
            except Exception as error:
                if bug is not None:
                    raise  # even the dead letter cannot be written: nothing durable is possible
                # Never let one message stall its partition (its offset could never be committed, and
                # every redelivery would fail the same way): keep its raw bytes as a dead letter.
                log.exception("unexpected error while handling a message; dead-lettering it", extra=_identity(job))
                bug = f"unexpected error: {excerpt(repr(error), 200)}"

    async def _handle_once(self, job: RequestJob) -> None:
        if job.request is None:
            assert job.error is not None
            await self._reject(job, job.error)
            return
        try:
            outcome = await self._run_with_retries(job.request)
        except (RetryableError, asyncio.CancelledError):
            raise
        except Exception as bug:  # never let one message stop the worker
            log.exception("unexpected error while processing a request", extra=_identity(job))
            await self._dead_letter(job, Reason.INTERNAL_ERROR, f"unexpected error: {excerpt(repr(bug), 200)}")
            outcome = await self._saga.give_up_outcome(job.request, bug, attempts=1)
        _report(job.request, outcome)

    async def _run_with_retries(self, request: PaymentLinkRequested) -> SagaOutcome:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(self._policy.attempts),
            wait=_honouring_hints(wait_random_exponential(multiplier=self._policy.initial_s, max=self._policy.max_s)),
            before_sleep=lambda state: _log_retry(request, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._saga.run_outcome(request)
        except RetryableError as error:
            return await self._saga.give_up_outcome(request, error, attempts=self._policy.attempts)
        raise AssertionError("tenacity always returns or raises")  # pragma: no cover

    async def _reject(self, job: RequestJob, error: PermanentError) -> None:
        await self._dead_letter(job, error.reason, error.message)
        failed = await self._saga.reject_unparseable(job.raw, error)
        metrics.SAGAS.labels("failed", error.reason.value).inc()
        log.info(
            "request rejected",
            extra={**_identity(job), "reason": error.reason.value, "result_published": failed is not None},
        )

    async def _dead_letter(self, job: RequestJob, reason: Reason, message: str) -> None:
        identity = recover_identity(job.raw)
        await self._dead_letters.record(
            topic=job.topic,
            partition=job.partition,
            offset=job.offset,
            raw=job.raw,
            reason=reason.value,
            message=message,
            event_id=identity.event_id if identity else None,
            account_id=identity.account_id if identity else None,
        )
        metrics.DEAD_LETTERS.labels(reason.value).inc()


def _honouring_hints(backoff: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    """The backoff, but never shorter than the failed dependency asked for (``retry_after_s``, e.g.
    Stripe's ``Retry-After`` on a 429)."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after_s if isinstance(error, RetryableError) else None
        return max(backoff(state), hint or 0.0)

    return wait


def _identity(job: RequestJob) -> dict[str, Any]:
    if job.request is not None:
        return _request_identity(job.request)
    return {"topic": job.topic, "partition": job.partition, "offset": job.offset}


def _request_identity(request: PaymentLinkRequested) -> dict[str, Any]:
    return {
        "payment_link_id": request.event_id,
        "correlation_id": request.correlation_id,
        "account_id": request.account_id,
    }


def _log_retry(request: PaymentLinkRequested, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    reason = error.reason.value if isinstance(error, RetryableError) else "unknown"
    metrics.RETRIES.labels(reason).inc()
    log.info(
        "transient failure; retrying",
        extra={
            **_request_identity(request),
            "attempt": state.attempt_number,
            "reason": reason,
            "error": error.message if isinstance(error, RetryableError) else repr(error),
            "retry_in_s": round(state.upcoming_sleep, 3),
        },
    )


def _report(request: PaymentLinkRequested, outcome: SagaOutcome) -> None:
    result = outcome.result
    if outcome.re_reported:
        # A redelivery, or a producer re-sending the request: the outcome was counted when the saga ended.
        label = "created" if isinstance(result, PaymentLinkCreated) else "failed"
        metrics.DUPLICATES.labels(label).inc()
        log.info(
            "duplicate request; result re-reported",
            extra={**_request_identity(request), "outcome": label, "result_event_id": result.event_id},
        )
        return
    if isinstance(result, PaymentLinkCreated):
        metrics.SAGAS.labels("created", "").inc()
        log.info("payment link created", extra={**_request_identity(request), "invoice_id": result.invoice_id})
    else:
        metrics.SAGAS.labels("failed", result.reason).inc()
        log.info(
            "payment link failed",
            extra={
                **_request_identity(request),
                "reason": result.reason,
                "retryable": result.retryable,
                "failed_step": result.failed_step,
                "compensated": result.compensated,
            },
        )
