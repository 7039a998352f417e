"""What the worker does with one request message, until its outcome is durable.

- A message that does not validate is dead-lettered (raw bytes kept) and, when an ``event_id`` can be
  recovered, answered with ``PaymentLinkFailed`` (``invalid_event``/``invalid_line_items``/…).
- A ``PaymentLinkCancelRequested`` (told apart by ``event_type``) runs the cancel
  (``consumer.app.cancels``) under the same retry policy; one that does not validate is dead-lettered
  and answered with ``PaymentLinkCancelRejected(invalid_event)`` when its ids can be recovered.
- A valid request runs the saga; transient faults are retried with exponential backoff and full jitter
  (the one ``RetryPolicy``, ``consumer.app.retry``); when they run out the saga gives up with
  ``PaymentLinkFailed(retryable=true)`` and keeps its progress for ``paylink replay``.
- A duplicate of a finished request re-appends its stored result (same ``event_id``: published again if the
  first copy already was, which consumers absorb by deduplicating on ``event_id``); it is counted in
  ``paylink_duplicates_total``, not again in ``paylink_sagas_total``.
- If even recording the outcome fails (MongoDB down), the whole message is retried with backoff until it
  succeeds or the worker stops: its offset stays uncommitted, so nothing is lost.
- An unexpected exception (a bug) never stops the worker: the message is dead-lettered with
  ``internal_error`` and the saga gives up retryably, so it can be replayed once the bug is fixed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from consumer import metrics, tracing
from consumer.app.cancels import cancel_identity, report_cancel, run_cancel_with_retries
from consumer.app.retry import RetryPolicy
from consumer.ports import ConsumedMessage, DeadLetterSink
from domain.cancel import LinkCanceller
from domain.cancel_events import PaymentLinkCancelRequested
from domain.errors import PermanentError, Reason, RetryableError, excerpt
from domain.events import PaymentLinkCreated, PaymentLinkRequested
from domain.intake import CANCEL_EVENT_TYPE, parse_message, recover_identity
from domain.saga import PaymentLinkSaga, SagaOutcome

log = logging.getLogger("paylink.processing")


@dataclass
class RequestJob:
    topic: str
    partition: int
    offset: int
    raw: bytes
    request: PaymentLinkRequested | PaymentLinkCancelRequested | None
    error: PermanentError | None
    serial_key: Hashable | None
    kafka_key: bytes | None = None  # key, headers and timestamp are kept with a dead letter, for its retry
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


class RequestHandler:
    def __init__(
        self,
        saga: PaymentLinkSaga,
        dead_letters: DeadLetterSink,
        policy: RetryPolicy,
        canceller: LinkCanceller | None = None,
    ) -> None:
        """``canceller``: None only where no cancel can arrive (a cancel then dead-letters as a bug)."""
        self._saga = saga
        self._dead_letters = dead_letters
        self._policy = policy
        self._canceller = canceller

    def prepare(self, record: ConsumedMessage) -> RequestJob:
        raw = record.value if isinstance(record.value, bytes) else b""
        metrics.MESSAGES_CONSUMED.labels(record.topic).inc()
        request: PaymentLinkRequested | PaymentLinkCancelRequested | None = None
        error: PermanentError | None = None
        try:
            request = parse_message(raw)
        except PermanentError as problem:
            error = problem
        key: Hashable | None = (request.account_id, request.contact_id) if request else record.key
        return RequestJob(
            record.topic,
            record.partition,
            record.offset,
            raw,
            request,
            error,
            key,
            record.key,
            # aiokafka's records have headers and a timestamp; the ConsumedMessage port leaves them optional.
            tuple(getattr(record, "headers", None) or ()),
            getattr(record, "timestamp", None),
        )

    async def handle(self, job: RequestJob) -> None:
        metrics.IN_FLIGHT.inc()
        try:
            # The message's span (child of its traceparent) and log context: every line and result inside
            # carries its ids and trace (consumer.tracing).
            with tracing.work_span(_span_name(job), job.headers, _identity(job), attributes=_kafka_attributes(job)):
                await self._until_durable(job)
        finally:
            metrics.IN_FLIGHT.dec()

    async def _until_durable(self, job: RequestJob) -> None:
        retries = 0
        bug: str | None = None  # set once handling failed unexpectedly: then only the dead letter is owed
        while True:
            try:
                if bug is None:
                    await self._handle_once(job)
                else:
                    await self._dead_letter(job, Reason.INTERNAL_ERROR, bug)
                return
            except RetryableError as error:
                retries += 1
                delay = self._policy.delay(retries)
                log.warning(
                    "could not record the outcome; retrying the message",
                    extra={**_identity(job), "error": error.message, "retry_in_s": round(delay, 3)},
                )
                await self._policy.sleep(delay)
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
        if isinstance(job.request, PaymentLinkCancelRequested):
            await self._cancel(job, job.request)
            return
        try:
            outcome = await run_with_retries(self._saga, self._policy, job.request)
        except (RetryableError, asyncio.CancelledError):
            raise
        except Exception as bug:  # never let one message stop the worker
            log.exception("unexpected error while processing a request", extra=_identity(job))
            await self._dead_letter(job, Reason.INTERNAL_ERROR, f"unexpected error: {excerpt(repr(bug), 200)}")
            outcome = await self._saga.give_up_outcome(job.request, bug, attempts=1)
        _report(job.request, outcome)

    async def _cancel(self, job: RequestJob, cancel: PaymentLinkCancelRequested) -> None:
        if self._canceller is None:
            raise RuntimeError("this worker was built without a canceller")
        try:
            outcome = await run_cancel_with_retries(self._canceller, self._policy, cancel)
        except (RetryableError, asyncio.CancelledError):
            raise
        except Exception as bug:  # never let one message stop the worker
            log.exception("unexpected error while processing a cancel", extra=_identity(job))
            await self._dead_letter(job, Reason.INTERNAL_ERROR, f"unexpected error: {excerpt(repr(bug), 200)}")
            outcome = await self._canceller.give_up_outcome(cancel, bug, attempts=1)
        report_cancel(cancel, outcome)

    async def _reject(self, job: RequestJob, error: PermanentError) -> None:
        await self._dead_letter(job, error.reason, error.message)
        identity = recover_identity(job.raw)
        answered: object | None
        if identity is not None and identity.event_type == CANCEL_EVENT_TYPE:
            answered = await self._canceller.reject_unparseable(job.raw, error) if self._canceller else None
            metrics.CANCELS.labels("rejected", error.reason.value).inc()
        else:
            answered = await self._saga.reject_unparseable(job.raw, error)
            metrics.SAGAS.labels("failed", error.reason.value).inc()
        log.info(
            "request rejected",
            extra={**_identity(job), "reason": error.reason.value, "result_published": answered is not None},
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
            key=job.kafka_key,
            headers=job.headers,
            timestamp_ms=job.timestamp_ms,
        )
        metrics.DEAD_LETTERS.labels(reason.value).inc()


async def run_with_retries(saga: PaymentLinkSaga, policy: RetryPolicy, request: PaymentLinkRequested) -> SagaOutcome:
    """Runs ``request``'s saga under ``policy``; when retries run out, the saga gives up retryably.

    The worker and ``paylink replay`` both run sagas through this one function, so they retry alike."""
    try:
        return await policy.run(lambda: saga.run_outcome(request), request_identity(request))
    except RetryableError as error:
        return await saga.give_up_outcome(request, error, attempts=policy.attempts)


def _identity(job: RequestJob) -> dict[str, Any]:
    if isinstance(job.request, PaymentLinkCancelRequested):
        return {**cancel_identity(job.request), "event_id": job.request.event_id}
    if job.request is not None:
        return request_identity(job.request)
    recovered = recover_identity(job.raw)
    found = (
        {"event_id": recovered.event_id, "correlation_id": recovered.correlation_id, "account_id": recovered.account_id}
        if recovered
        else {}
    )
    return {"topic": job.topic, "partition": job.partition, "offset": job.offset, **found}


def _span_name(job: RequestJob) -> str:
    if isinstance(job.request, PaymentLinkCancelRequested):
        return "cancel PaymentLinkCancelRequested"
    return "saga PaymentLinkRequested" if job.request is not None else "reject invalid message"


def _kafka_attributes(job: RequestJob) -> dict[str, Any]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": job.topic,
        "messaging.destination.partition.id": str(job.partition),
        "messaging.kafka.offset": job.offset,
    }


def request_identity(request: PaymentLinkRequested) -> dict[str, Any]:
    """The ids every log record about ``request`` carries (the request's ``event_id`` is the link's id)."""
    return {
        "payment_link_id": request.event_id,
        "event_id": request.event_id,
        "correlation_id": request.correlation_id,
        "account_id": request.account_id,
    }


def _report(request: PaymentLinkRequested, outcome: SagaOutcome) -> None:
    result = outcome.result
    if outcome.re_reported:
        # A redelivery, or a producer re-sending the request: the outcome was counted when the saga ended.
        label = "created" if isinstance(result, PaymentLinkCreated) else "failed"
        metrics.DUPLICATES.labels(label).inc()
        log.info(
            "duplicate request; result re-reported",
            extra={**request_identity(request), "outcome": label, "result_event_id": result.event_id},
        )
        return
    if isinstance(result, PaymentLinkCreated):
        metrics.SAGAS.labels("created", "").inc()
        log.info("payment link created", extra={**request_identity(request), "invoice_id": result.invoice_id})
    else:
        metrics.SAGAS.labels("failed", result.reason).inc()
        tracing.mark_failed(str(result.reason), result.message)
        if result.retryable:
            metrics.RETRYABLE_FAILURES.labels(result.reason).inc()
        log.info(
            "payment link failed",
            extra={
                **request_identity(request),
                "error": result.message,
                "reason": result.reason,
                "retryable": result.retryable,
                "failed_step": result.failed_step,
                "compensated": result.compensated,
            },
        )
