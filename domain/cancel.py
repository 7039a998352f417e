"""Cancelling a payment link: ``PaymentLinkCancelRequested`` → the invoice voided once, or a rejection.

``LinkCanceller.run_outcome`` guarantees, with the saga's discipline (progress saved before each effect,
version-checked, the result saved before it is appended to the outbox):
- only the link's own tenant cancels it: a link of another ``account_id`` (or none) is
  ``payment_link_not_found``, and nothing is read from or done in Stripe;
- a link whose saga is still running makes the cancel raise ``RetryableError``: the worker's retry policy
  waits for the creation (on the same partition the contact key already orders them; on another one the
  retries cover it); when they run out, ``give_up_outcome`` answers ``stripe_unavailable`` retryably;
- a failed link is ``not_created`` (retryable when the link's failure was: a replay may still create it);
- a paid or void invoice (as the lifecycle record or Stripe tells) is ``already_paid`` / ``already_void``:
  never a second void;
- otherwise the intent is saved on the cancel record and on the link's lifecycle record, then the invoice
  is voided with a key derived from the cancel's ``event_id`` (a resumed cancel sends the same key), and
  the void is observed through ``LinkLifecycle``: the result is the link's one ``PaymentLinkVoided``
  (deterministic id, ``source=cancel``, ``cancel_request_id``), whoever noticed the void first;
- a cancel with a result re-appends it on redelivery (same event id: published again if the first
  copy already was; consumers dedupe on ``event_id``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.cancel_record import CancelRecord, CancelResult, CancelStatus
from domain.errors import PaylinkError, PermanentError, Reason, ReplayRefusedError, RetryableError, excerpt
from domain.events import PaymentLinkCreated
from domain.intake import CANCEL_EVENT_TYPE, UNPARSEABLE_NAMESPACE, recover_identity
from domain.lifecycle import LifecycleRecord, LinkStatus, Observation
from domain.lifecycle_events import PaymentLinkVoided, Source, Transition
from domain.lifecycle_service import LinkLifecycle
from domain.ports import Billing, CancelStore, Clock, IdGenerator, LifecycleStore, Outbox, SagaStore
from domain.saga_record import IN_FLIGHT_STATUSES, SagaStatus

log = logging.getLogger("paylink.cancel")


def void_key(cancel_request_id: str) -> str:
    """The Stripe idempotency key of a cancel's void: the same on every retry, redelivery and replay."""
    return f"paylink-cancel-{cancel_request_id}-void"


@dataclass(frozen=True)
class CancelOutcome:
    result: CancelResult
    re_reported: bool = False  # the cancel had a result already; it was appended again


@dataclass(frozen=True)
class CancelPorts:
    sagas: SagaStore
    cancels: CancelStore
    lifecycles: LifecycleStore
    lifecycle: LinkLifecycle
    billing: Billing
    outbox: Outbox
    clock: Clock
    ids: IdGenerator


class LinkCanceller:
    def __init__(self, ports: CancelPorts) -> None:
        self._p = ports

    async def run_outcome(self, cancel: PaymentLinkCancelRequested) -> CancelOutcome:
        """Runs (or resumes) ``cancel`` to its result, appended to the outbox. ``RetryableError``: call again."""
        record = await self._p.cancels.create_if_absent(CancelRecord.start(cancel, self._p.clock.now()))
        if record.has_result:
            return await self._report_again(record)
        return CancelOutcome(await self._run(record))

    async def give_up_outcome(
        self, cancel: PaymentLinkCancelRequested, error: BaseException, attempts: int
    ) -> CancelOutcome:
        """Ends a cancel whose retries ran out: ``stripe_unavailable``, retryable, progress kept for a replay."""
        record = await self._p.cancels.create_if_absent(CancelRecord.start(cancel, self._p.clock.now()))
        if record.has_result:
            return await self._report_again(record)
        cause = error.message if isinstance(error, PaylinkError) else excerpt(repr(error), 200)
        message = (
            f"gave up after {attempts} attempt(s): {cause}; `paylink replay --event-id "
            f"{record.cancel_request_id}` resumes it"
        )
        rejected = self._rejection(record, CancelRejection.STRIPE_UNAVAILABLE, message, retryable=True)
        await self._p.cancels.save(record.gave_up(rejected, self._p.clock.now()))
        await self._p.outbox.append(rejected)
        return CancelOutcome(rejected)

    async def prepare_replay(
        self, cancel_request_id: str, *, running_stale_before: datetime | None = None
    ) -> PaymentLinkCancelRequested:
        """Re-opens a cancel that gave up or was rejected retryably; returns it, for ``run_outcome``. A
        cancel still running but not saved since ``running_stale_before`` is abandoned (e.g. a replay
        killed mid-run) and resumes as recorded. ``ReplayRefusedError`` for an unknown, voided or
        permanently rejected cancel, and a running one saved since ``running_stale_before`` (all if None)."""
        record = await self._p.cancels.load(cancel_request_id)
        if record is None:
            raise ReplayRefusedError(f"no cancel {excerpt(cancel_request_id)}")
        stale = running_stale_before is not None and record.updated_at < running_stale_before
        if record.status is CancelStatus.RUNNING and stale:
            return record.request_event()
        if not record.replayable:
            outcome = record.result["event_type"] if record.result else "no result yet"
            raise ReplayRefusedError(f"cancel {excerpt(cancel_request_id)} is {record.status} ({outcome})")
        reopened = await self._p.cancels.save(record.reopened_for_replay(self._p.clock.now()))
        return reopened.request_event()

    async def reject_unparseable(self, raw: bytes, error: PermanentError) -> PaymentLinkCancelRejected | None:
        """The ``invalid_event`` rejection of a cancel that did not validate, appended to the outbox, when
        its ``event_id`` and ``payment_link_id`` can be recovered (same event id on every redelivery)."""
        identity = recover_identity(raw)
        if identity is None or identity.event_type != CANCEL_EVENT_TYPE or identity.payment_link_id is None:
            return None
        rejected = PaymentLinkCancelRejected(
            event_id=str(uuid.uuid5(UNPARSEABLE_NAMESPACE, f"cancel/{identity.event_id}")),
            occurred_at=self._p.clock.now(),
            payment_link_id=identity.payment_link_id,
            cancel_request_id=identity.event_id,
            correlation_id=identity.correlation_id,
            account_id=identity.account_id,
            contact_id=identity.contact_id,
            reason=CancelRejection.INVALID_EVENT,
            message=error.message,
            retryable=False,
            attempt=1,
        )
        await self._p.outbox.append(rejected)
        return rejected

    # --- the steps -------------------------------------------------------------------------------------

    async def _run(self, record: CancelRecord) -> CancelResult:
        link = record.payment_link_id
        saga = await self._p.sagas.load(link)
        if saga is None or saga.account_id != record.account_id:
            message = f"no payment link {link} in account {excerpt(record.account_id)}"
            return await self._reject(record, CancelRejection.PAYMENT_LINK_NOT_FOUND, message)
        if saga.status in IN_FLIGHT_STATUSES:
            raise RetryableError(Reason.STRIPE_UNAVAILABLE, f"payment link {link} is still being created")
        if saga.status is not SagaStatus.CREATED:
            assert saga.failure is not None  # a failed saga stores its failure
            message = f"payment link {link} was not created ({saga.failure.reason}): nothing to cancel"
            return await self._reject(record, CancelRejection.NOT_CREATED, message, retryable=saga.failure.retryable)
        created = saga.result
        assert isinstance(created, PaymentLinkCreated)  # a created saga stores its PaymentLinkCreated
        if not record.void_started:
            refusal = await self._refusal(created)
            if refusal is not None:
                return await self._reject(record, *refusal)
            record = await self._p.cancels.save(record.voiding(self._p.clock.now()))
        await self._intend(created, record.cancel_request_id)
        try:
            await self._p.billing.void_invoice(
                created.stripe_account, created.invoice_id, void_key(record.cancel_request_id)
            )
        except PermanentError as error:
            return await self._void_refused(record, created, error)
        return await self._observe_void(record, created)

    async def _refusal(self, created: PaymentLinkCreated) -> tuple[CancelRejection, str] | None:
        """Why the link cannot be voided (paid, void, invoice gone), from its lifecycle, then from Stripe."""
        invoice = created.invoice_id
        lifecycle = await self._p.lifecycles.load(created.payment_link_id)
        if lifecycle is not None and lifecycle.status is LinkStatus.PAID:
            return CancelRejection.ALREADY_PAID, f"invoice {invoice} is paid"
        if lifecycle is not None and lifecycle.status is LinkStatus.VOID:
            return CancelRejection.ALREADY_VOID, f"invoice {invoice} is void already"
        snapshot = await self._p.billing.retrieve_invoice(created.stripe_account, invoice)
        if snapshot is None:
            return CancelRejection.PAYMENT_LINK_NOT_FOUND, f"invoice {invoice} no longer exists in Stripe"
        if snapshot.status == "paid":
            return CancelRejection.ALREADY_PAID, f"invoice {invoice} is paid"
        if snapshot.status == "void":
            return CancelRejection.ALREADY_VOID, f"invoice {invoice} is void already"
        return None

    async def _intend(self, created: PaymentLinkCreated, cancel_request_id: str) -> None:
        """Records the cancel's intent on the link's lifecycle record, so that a webhook noticing the void
        before this cancel does still credits the void to it (of two cancels, the last to get here)."""
        now = self._p.clock.now()
        record = await self._p.lifecycles.create_if_absent(LifecycleRecord.for_link(created, now))
        if record.is_final or record.cancel_request_id == cancel_request_id:
            return
        await self._p.lifecycles.save(record.with_cancel_intent(cancel_request_id, now))

    async def _withdraw(self, created: PaymentLinkCreated, cancel_request_id: str) -> None:
        """Withdraws this cancel's intent (its void was refused), leaving another cancel's in place."""
        record = await self._p.lifecycles.load(created.payment_link_id)
        if record is not None and record.cancel_request_id == cancel_request_id:
            await self._p.lifecycles.save(record.with_cancel_intent(None, self._p.clock.now()))

    async def _void_refused(
        self, record: CancelRecord, created: PaymentLinkCreated, error: PermanentError
    ) -> CancelResult:
        snapshot = await self._p.billing.retrieve_invoice(created.stripe_account, created.invoice_id)
        status = snapshot.status if snapshot is not None else None
        if status == "void":
            return await self._observe_void(record, created)
        await self._withdraw(created, record.cancel_request_id)
        if status == "paid":
            return await self._reject(record, CancelRejection.ALREADY_PAID, f"invoice {created.invoice_id} is paid")
        message = f"Stripe refused to void invoice {created.invoice_id}: {error.message}"
        return await self._reject(record, CancelRejection.STRIPE_UNAVAILABLE, message)

    async def _observe_void(self, record: CancelRecord, created: PaymentLinkCreated) -> CancelResult:
        snapshot = await self._p.billing.retrieve_invoice(created.stripe_account, created.invoice_id)
        if snapshot is None or snapshot.status != "void":
            raise RetryableError(Reason.STRIPE_UNAVAILABLE, f"invoice {created.invoice_id} is not void yet")
        observation = Observation(
            snapshot=snapshot,
            stripe_account=created.stripe_account,
            source=Source.CANCEL,
            occurred_at=snapshot.voided_at or self._p.clock.now(),
            cancel_request_id=record.cancel_request_id,
        )
        observed = await self._p.lifecycle.observe(observation)
        assert observed.record is not None  # the created link's own invoice, on its own account
        voided = _voided_event(observed.record)
        if voided is None:  # the link ended otherwise first: paid
            message = f"invoice {created.invoice_id} was paid before it could be voided"
            return await self._reject(record, CancelRejection.ALREADY_PAID, message)
        if voided.cancel_request_id != record.cancel_request_id:
            by = f"cancel {voided.cancel_request_id}" if voided.cancel_request_id else "Stripe"
            message = f"invoice {created.invoice_id} was voided before, by {by}"
            return await self._reject(record, CancelRejection.ALREADY_VOID, message)
        return await self._finish(record, voided)

    # --- endings ---------------------------------------------------------------------------------------

    def _rejection(
        self, record: CancelRecord, reason: CancelRejection, message: str, *, retryable: bool
    ) -> PaymentLinkCancelRejected:
        return PaymentLinkCancelRejected(
            event_id=self._p.ids.new_id(),
            occurred_at=self._p.clock.now(),
            payment_link_id=record.payment_link_id,
            cancel_request_id=record.cancel_request_id,
            correlation_id=record.request.get("correlation_id"),
            account_id=record.account_id,
            contact_id=record.contact_id,
            reason=reason,
            message=message,
            retryable=retryable,
            attempt=record.attempt,
        )

    async def _reject(
        self, record: CancelRecord, reason: CancelRejection, message: str, *, retryable: bool = False
    ) -> CancelResult:
        log.info("cancel rejected", extra={**_context(record), "reason": reason.value, "retryable": retryable})
        return await self._finish(record, self._rejection(record, reason, message, retryable=retryable))

    async def _finish(self, record: CancelRecord, result: CancelResult) -> CancelResult:
        # The result first, then the outbox: a crash in between re-appends this same event on redelivery.
        await self._p.cancels.save(record.done(result, self._p.clock.now()))
        await self._p.outbox.append(result)
        return result

    async def _report_again(self, record: CancelRecord) -> CancelOutcome:
        result = record.result_event()
        await self._p.outbox.append(result)
        return CancelOutcome(result, re_reported=True)


def _voided_event(record: LifecycleRecord) -> PaymentLinkVoided | None:
    entries = [entry for entry in record.history if entry.transition is Transition.VOIDED]
    return PaymentLinkVoided.model_validate(entries[0].event) if entries else None


def _context(record: CancelRecord) -> dict[str, Any]:
    return {
        "cancel_request_id": record.cancel_request_id,
        "payment_link_id": record.payment_link_id,
        "account_id": record.account_id,
        "attempt": record.attempt,
    }
