"""The payment-link saga: entry points for the worker and ``paylink replay``.

How the worker uses it, per Kafka message::

    try:
        request = parse_request(raw)                       # domain.intake
    except PermanentError as error:
        await saga.reject_unparseable(raw, error)          # PaymentLinkFailed if an event_id was found
        ... dead-letter the raw bytes, commit
    else:
        try:  result = await saga.run(request)             # retried with backoff on RetryableError
        except RetryableError (retries exhausted) as error:
            result = await saga.give_up(request, error, attempts)
        ... commit (the result is in the outbox either way)

- ``run`` starts, resumes or re-reports: a finished saga re-appends its stored result (same event id,
  so the idempotent outbox stores nothing new). ``RetryableError`` propagates with all progress kept.
  ``run_outcome`` / ``give_up_outcome`` also say whether the result was re-reported (a duplicate).
  A ``PermanentError`` at a step ends the saga as ``PaymentLinkFailed``, compensating first.
- ``give_up`` ends a saga that kept failing transiently: ``PaymentLinkFailed(retryable=true)``, no
  compensation, state kept so a replay resumes it.
- ``prepare_replay`` / ``replay`` re-open a failed saga, or an abandoned running or compensating one
  (``paylink replay``).

A permanent failure with an invoice to undo saves the saga ``compensating`` (the owed undo survives a
crash), then ends it ``failed``. A compensation that fails permanently (or is given up on) leaves it
``compensation_failed``: logged as an error, reported with ``compensated=false`` and the invoice to clean
up; ``prepare_replay`` retries it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from domain.errors import (
    PaylinkError,
    PermanentError,
    Reason,
    ReplayRefusedError,
    RetryableError,
    excerpt,
    safe_message,
)
from domain.events import PaymentLinkCreated, PaymentLinkFailed, PaymentLinkRequested
from domain.intake import failure_for_unparseable
from domain.ports import (
    Billing,
    Clock,
    CrmDirectory,
    IdGenerator,
    Outbox,
    SagaStore,
    Shortener,
    StepObserver,
    Unobserved,
)
from domain.saga_history import CarriedHistory, EntryKind
from domain.saga_record import IN_FLIGHT_STATUSES, SagaFailure, SagaRecord, SagaStatus
from domain.saga_run import SagaPorts, StepTimer, event_message, log_context, started_record
from domain.saga_steps import SagaRun, first_unfinished_step, last_retried_step

log = logging.getLogger("paylink.saga")

Result = PaymentLinkCreated | PaymentLinkFailed


@dataclass(frozen=True)
class SagaOutcome:
    """A terminal result and whether this call produced it. Not a field of the events: they are the
    published contract, and a re-reported result must stay equal to the stored one."""

    result: Result
    re_reported: bool = False  # True: the saga had already ended; its stored result was appended again


class PaymentLinkSaga:
    def __init__(
        self,
        *,
        crm: CrmDirectory,
        billing: Billing,
        shortener: Shortener,
        store: SagaStore,
        outbox: Outbox,
        clock: Clock,
        ids: IdGenerator,
        items_per_call: int = 1,
        steps: StepObserver | None = None,
        on_step: StepTimer | None = None,
    ) -> None:
        """``items_per_call``: line items per ``Billing.add_invoice_items`` call (1 = one POST per item; more
        only with a bulk-call adapter, fixed while sagas are in flight). ``steps``: each step try (tracing);
        ``on_step``: each completed forward step's duration (metrics)."""
        self._ports = SagaPorts(crm, billing, shortener, store, clock, items_per_call, steps or Unobserved(), on_step)
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self._ids = ids
        self._carried = CarriedHistory()  # unsaved history of transient failures (domain.saga_history)

    async def run(self, request: PaymentLinkRequested) -> Result:
        """Runs (or resumes) the saga of ``request`` to its terminal result, appended to the outbox.
        Raises ``RetryableError`` when a step hits a transient fault (progress is kept; call again)."""
        return (await self.run_outcome(request)).result

    async def run_outcome(self, request: PaymentLinkRequested) -> SagaOutcome:
        """``run``, telling whether the result is new or a finished saga's stored one re-reported."""
        record = await self._store.create_if_absent(started := started_record(request, self._clock.now()))
        if record.request != request.model_dump(mode="json"):
            # Same event_id, other body: the producer broke the idempotency contract. The stored request
            # wins (identical Stripe parameters on every retry); the difference is only logged.
            log.warning("event_id reused with a different request; the first one wins", extra=log_context(record))
        if record.is_terminal:
            return await self._report_again(record)
        run = self._run(record, resumed=record is not started)
        try:
            if record.status is SagaStatus.COMPENSATING:
                return SagaOutcome(await self._compensate(run))  # a permanent failure still owes its compensation
            try:
                await run.forward()
            except PermanentError as error:
                return SagaOutcome(await self._fail(run, error))
            return SagaOutcome(await self._succeed(run))
        except RetryableError as error:
            self._carry(run, error)
            raise

    def _run(self, record: SagaRecord, *, resumed: bool = True) -> SagaRun:
        return SagaRun(self._ports, record, self._carried.take(record.payment_link_id), resumed=resumed)

    def _carry(self, run: SagaRun, error: RetryableError) -> None:
        run.note(EntryKind.RETRY, error=error)
        self._carried.keep(run.record.payment_link_id, run.journal.pending)

    async def give_up(self, request: PaymentLinkRequested, error: BaseException, attempts: int) -> Result:
        """Ends the saga after the worker's retries ran out: ``PaymentLinkFailed(retryable=true)``.

        No compensation: the state stays so that a replay resumes at the first unfinished step.
        ``reason`` is the error's (``stripe_unavailable`` for Stripe faults), else ``internal_error``."""
        return (await self.give_up_outcome(request, error, attempts)).result

    async def give_up_outcome(self, request: PaymentLinkRequested, error: BaseException, attempts: int) -> SagaOutcome:
        """``give_up``, telling whether the saga had meanwhile ended (its stored result re-reported)."""
        record = await self._store.create_if_absent(SagaRecord.start(request, self._clock.now()))
        if record.is_terminal:
            return await self._report_again(record)
        run = self._run(record)
        cause = error.message if isinstance(error, PaylinkError) else excerpt(repr(error), 200)
        reason = error.reason if isinstance(error, PaylinkError) else Reason.INTERNAL_ERROR
        # The step this process was retrying: unsaved progress (ADR 0018) may put it past the stored one's.
        failed_step = last_retried_step(run.journal.pending) or first_unfinished_step(record)
        run.journal.begin(failed_step, self._clock.now())
        run.note(EntryKind.GAVE_UP, error=RetryableError(reason, safe_message(f"after {attempts} attempt(s): {cause}")))
        if record.status is SagaStatus.COMPENSATING and record.failure is not None:
            problem = f"gave up after {attempts} attempt(s): {cause}"
            return SagaOutcome(await self._end_compensation_failed(run, record.failure, problem))
        failure = SagaFailure(
            reason=reason,
            message=safe_message(
                f"gave up after {attempts} attempt(s) at step {failed_step}: {cause}; "
                "progress is kept and `paylink replay` resumes it"
            ),
            retryable=True,
            failed_step=failed_step,
        )
        return SagaOutcome(await self._finish(run, SagaStatus.FAILED, failure))

    async def prepare_replay(
        self, payment_link_id: str, *, running_stale_before: datetime | None = None
    ) -> PaymentLinkRequested:
        """Re-opens a failed or abandoned saga and returns its request, to be passed to ``run``.

        - failed, retryable: resumes at the first unfinished step with the same idempotency keys;
        - compensation_failed: retries the compensation, then ends failed again;
        - failed, permanent (compensated or nothing to compensate): starts over with new invoice keys
          (``restarts`` + 1), a fresh due date, CRM lookups and customer step;
        - running or compensating, last saved before ``running_stale_before``: abandoned (e.g. a replay
          killed before ``run``; its Kafka message was committed long ago, so no worker resumes it).
          Resumes as recorded with the same keys, like a retryable failure (a compensating one is undone).
        ``attempt`` grows by one. Raises ``ReplayRefusedError`` for unknown or created sagas, and for running
        or compensating ones saved since ``running_stale_before`` (all when None): a runner may be on them.
        The save is version-checked: if a runner saved meanwhile, ``ConcurrentUpdateError`` instead."""
        record = await self._store.load(payment_link_id)
        if record is None:
            raise ReplayRefusedError(f"no saga {excerpt(payment_link_id)}")
        if record.status is SagaStatus.CREATED:
            raise ReplayRefusedError(f"saga {excerpt(payment_link_id)} is {record.status}, not failed")
        if record.status in IN_FLIGHT_STATUSES and (
            running_stale_before is None or record.updated_at >= running_stale_before
        ):
            raise ReplayRefusedError(
                f"saga {excerpt(payment_link_id)} is {record.status}, saved too recently to be abandoned"
            )
        reopened = await self._store.save(record.reopened_for_replay(self._clock.now()))
        log.info("saga re-opened for replay", extra=log_context(reopened))
        return reopened.request_event()

    async def replay(self, payment_link_id: str) -> Result:
        return await self.run(await self.prepare_replay(payment_link_id))  # raises like them

    async def reject_unparseable(self, raw: bytes, error: PermanentError) -> PaymentLinkFailed | None:
        """Appends the ``PaymentLinkFailed`` for input failing ``parse_request`` that has an ``event_id``."""
        event = failure_for_unparseable(raw, error, self._clock.now())
        if event is not None:
            await self._outbox.append(event)
        return event

    async def _report_again(self, record: SagaRecord) -> SagaOutcome:
        assert record.result is not None, "terminal sagas always store their result"
        await self._outbox.append(record.result)
        return SagaOutcome(record.result, re_reported=True)

    async def _succeed(self, run: SagaRun) -> Result:
        record = run.record
        invoice = record.invoice
        assert invoice is not None and invoice.hosted_invoice_url and record.due_date is not None
        assert record.stripe_account is not None and record.customer_id is not None
        result = PaymentLinkCreated(
            event_id=self._ids.new_id(),
            occurred_at=self._clock.now(),
            payment_link_id=record.payment_link_id,
            correlation_id=run.request.correlation_id,
            account_id=record.account_id,
            contact_id=record.contact_id,
            stripe_account=record.stripe_account,
            customer_id=record.customer_id,
            invoice_id=invoice.id,
            invoice_number=invoice.number,
            status=invoice.status,
            amount_due=invoice.amount_due,
            currency=invoice.currency,
            due_date=record.due_date,
            hosted_invoice_url=invoice.hosted_invoice_url,
            invoice_pdf=invoice.invoice_pdf,
            short_url=record.short_url,
            url=record.short_url or invoice.hosted_invoice_url,
            attempt=record.attempt,
        )
        run.note_result(result.event_id)
        await run.save(record.created(result, self._clock.now()))
        await self._outbox.append(result)
        return result

    async def _fail(self, run: SagaRun, error: PermanentError) -> Result:
        failure = SagaFailure(reason=error.reason, message=error.message, retryable=False, failed_step=run.current_step)
        run.note(EntryKind.FAILED, error=error)
        log.info(
            "saga failed permanently",
            extra={
                **log_context(run.record),
                "correlation_id": run.request.correlation_id,
                "reason": str(error.reason),
                "step": str(run.current_step),
                "error": error.message,
            },
        )
        if not run.to_undo():
            return await self._finish(run, SagaStatus.FAILED, failure)
        # Record the debt first: if compensation is interrupted, the next run resumes it.
        await run.save(run.record.compensating(failure, self._clock.now()))
        return await self._compensate(run)

    async def _compensate(self, run: SagaRun) -> Result:
        failure = run.record.failure
        assert failure is not None
        try:
            compensated = await run.compensate()
        except PermanentError as error:
            return await self._end_compensation_failed(run, failure, error.message)
        return await self._finish(run, SagaStatus.FAILED, failure.undone(compensated))

    async def _end_compensation_failed(self, run: SagaRun, failure: SagaFailure, problem: str) -> Result:
        log.error(
            "compensation failed; the invoice needs manual cleanup",
            extra={**log_context(run.record), "invoice_id": run.record.invoice_id, "problem": problem},
        )
        return await self._finish(run, SagaStatus.COMPENSATION_FAILED, failure.undo_failed(problem))

    async def _finish(self, run: SagaRun, status: SagaStatus, failure: SagaFailure) -> Result:
        result = PaymentLinkFailed(
            event_id=self._ids.new_id(),
            occurred_at=self._clock.now(),
            payment_link_id=run.record.payment_link_id,
            correlation_id=run.request.correlation_id,
            account_id=run.record.account_id,
            contact_id=run.record.contact_id,
            reason=failure.reason,
            message=event_message(run.record, failure),
            retryable=failure.retryable,
            failed_step=failure.failed_step,
            compensated=failure.compensated,
            attempt=run.record.attempt,
        )
        run.note_result(result.event_id)
        # Result first, then the outbox: a crash in between re-appends this same event on redelivery.
        await run.save(run.record.ended(status, failure, result, self._clock.now()))
        await self._outbox.append(result)
        return result
