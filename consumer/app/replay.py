"""Replaying failed requests (``paylink replay``): re-runs chosen sagas in this process, to a new result in
the outbox.

Each saga resumes from its recorded state (``PaymentLinkSaga.replay`` semantics) through the worker's
own ``run_with_retries`` and ``RetryPolicy``: transient faults are retried with backoff that honours
``Retry-After``, each retry logged and counted, and when retries run out the saga gives up
retryably again (``PaymentLinkFailed(retryable=true)``, replayable later). The relay publishes the new
result. Sagas that are unknown, still running or already created are skipped, never re-run.
Targets are fixed before the first replay, so a saga that fails again is not picked up twice.

A running (or compensating) saga not saved for ``stale_after`` is abandoned, not running: a replay
killed between ``prepare_replay`` and the end of ``run`` leaves it so, and its Kafka message was
committed long ago.
Named by ``--event-id`` it resumes like a retryable failure (same keys). The filters do not select
such sagas (``find_replayable`` returns failed ones only): taking one over is an explicit act.

A cancel's ``event_id`` names a cancel: one that gave up (``PaymentLinkCancelRejected(stripe_unavailable,
retryable=true)``) or was rejected retryably resumes through ``run_cancel_with_retries`` (same void key),
to ``PaymentLinkVoided`` or a new rejection; a voided, permanently rejected or running one is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from opentelemetry.trace import SpanKind

from consumer import tracing
from consumer.app.cancels import run_cancel_with_retries
from consumer.app.requests import run_with_retries
from consumer.app.retry import RetryPolicy
from consumer.ports import SagaQueries
from domain.cancel import LinkCanceller
from domain.cancel_events import PaymentLinkCancelRejected
from domain.cancel_record import CancelRecord, CancelStatus
from domain.errors import ReplayRefusedError, RetryableError
from domain.events import PaymentLinkCreated
from domain.ports import CancelStore, Clock
from domain.saga import PaymentLinkSaga
from domain.saga_record import IN_FLIGHT_STATUSES, SagaRecord, SagaStatus

log = logging.getLogger("paylink.replay")

# Why 15 minutes: a worker saves its saga after every step, and one step takes at most its retry budget
# (PAYLINK_RETRY_ATTEMPTS x (Stripe timeout + backoff): 6 x (10 s + 5 s) by default) plus the drain
# deadline (20 s). A saga unsaved for far longer has no live runner. Taking a live one would still be
# safe (same idempotency keys, version-checked saves) but would race the worker for nothing.
STALE_AFTER_S = 900


@dataclass
class ReplayTally:
    created: int = 0
    failed_again: int = 0
    already_succeeded: int = 0
    running: int = 0
    not_found: int = 0
    not_enqueued: int = 0
    voided: int = 0  # cancels replayed to PaymentLinkVoided
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        again = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
        voided = f", cancels voided {self.voided}" if self.voided else ""
        return (
            f"replayed {self.created + self.voided + self.failed_again} (created {self.created}{voided}, failed "
            f"again {self.failed_again}{f': {again}' if again else ''}); skipped "
            f"{self.already_succeeded + self.running} (already succeeded {self.already_succeeded}, still running "
            f"{self.running}); not found {self.not_found}; failed to enqueue {self.not_enqueued}"
        )

    @property
    def all_succeeded(self) -> bool:
        """True when every target ended created or had already succeeded (or was still running)."""
        return not (self.failed_again or self.not_found or self.not_enqueued)


@dataclass(frozen=True)
class ReplaySelection:
    event_ids: Sequence[str] = ()
    reason: str | None = None
    account: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000
    stale_after: timedelta = timedelta(seconds=STALE_AFTER_S)


@dataclass(frozen=True)
class ReplayTarget:
    payment_link_id: str
    record: SagaRecord | None
    stale_before: datetime | None = None  # running sagas saved before it are abandoned
    cancel: CancelRecord | None = None  # the id names a cancel, not a saga

    @property
    def abandoned(self) -> bool:
        record, cutoff = self.record, self.stale_before
        return (
            record is not None
            and record.status in IN_FLIGHT_STATUSES
            and cutoff is not None
            and record.updated_at < cutoff
        )

    @property
    def replayable(self) -> bool:
        if self.cancel is not None:
            running = self.cancel.status is CancelStatus.RUNNING
            stale = self.stale_before is not None and self.cancel.updated_at < self.stale_before
            return self.cancel.replayable or (running and stale)
        failed = self.record is not None and self.record.status in (SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED)
        return failed or self.abandoned


class Replayer:
    """Chooses and re-runs sagas; one instance serves one ``paylink replay`` run."""

    def __init__(
        self,
        saga: PaymentLinkSaga,
        sagas: SagaQueries,
        policy: RetryPolicy,
        clock: Clock,
        *,
        canceller: LinkCanceller | None = None,
        cancels: CancelStore | None = None,
    ) -> None:
        self._saga = saga
        self._sagas = sagas
        self._policy = policy
        self._clock = clock
        self._canceller = canceller
        self._cancels = cancels

    async def targets(self, selection: ReplaySelection) -> list[ReplayTarget]:
        """The sagas ``selection`` names (by id, each once) or matches (failed ones only), fixed up front."""
        if selection.event_ids:
            stale_before = self._clock.now() - selection.stale_after
            ids = dict.fromkeys(selection.event_ids)
            return [await self._target(i, stale_before) for i in ids]
        records = await self._sagas.find_replayable(
            reason=selection.reason,
            account_id=selection.account,
            since=selection.since,
            until=selection.until,
            limit=selection.limit,
        )
        return [ReplayTarget(record.payment_link_id, record) for record in records]

    async def _target(self, event_id: str, stale_before: datetime) -> ReplayTarget:
        record = await self._sagas.load(event_id)
        if record is None and self._cancels is not None:
            return ReplayTarget(event_id, None, stale_before, await self._cancels.load(event_id))
        return ReplayTarget(event_id, record, stale_before)

    async def replay_one(self, target: ReplayTarget, tally: ReplayTally) -> str:
        """Re-runs one saga (or cancel) to its new result (in the outbox); returns the line that reports it.

        Each replay is a trace of its own, and logs one line with its outcome and the ids (like the worker)."""
        fields = _replay_fields(target)
        with tracing.work_span("replay", None, fields, kind=SpanKind.INTERNAL):
            line = await self._replay_one(target, tally)
            log.info("replayed", extra={**fields, "outcome": line})
            return line

    async def _replay_one(self, target: ReplayTarget, tally: ReplayTally) -> str:
        if target.cancel is not None:
            return await self._replay_cancel(target, target.cancel, tally)
        record = target.record
        if record is None:
            tally.not_found += 1
            return "not found"
        if record.status is SagaStatus.CREATED or (record.status in IN_FLIGHT_STATUSES and not target.abandoned):
            succeeded = record.status is SagaStatus.CREATED
            tally.already_succeeded += succeeded
            tally.running += not succeeded
            return "skipped: already succeeded" if succeeded else "skipped: still running"
        try:
            # The cutoff goes along: prepare_replay re-checks it on the saga as stored now, in case a
            # runner saved it since the targets were read.
            request = await self._saga.prepare_replay(target.payment_link_id, running_stale_before=target.stale_before)
        except ReplayRefusedError as refused:  # a worker (or another replay) got there first
            tally.running += 1
            return f"skipped: {refused}"
        except RetryableError as error:
            tally.not_enqueued += 1
            return f"failed to enqueue: {error.message}"
        try:
            result = (await run_with_retries(self._saga, self._policy, request)).result
        except RetryableError as error:
            tally.not_enqueued += 1
            return f"failed to enqueue: {error.message} (the saga stays running; replay it again later)"
        if isinstance(result, PaymentLinkCreated):
            tally.created += 1
            return f"created  {result.invoice_id}  {result.url}"
        tally.failed_again += 1
        tally.reasons[result.reason] = tally.reasons.get(result.reason, 0) + 1
        return f"failed again  {result.reason}{' (retryable)' if result.retryable else ''}: {result.message}"

    async def _replay_cancel(self, target: ReplayTarget, record: CancelRecord, tally: ReplayTally) -> str:
        assert self._canceller is not None, "cancels are found only with a canceller"
        try:
            cancel = await self._canceller.prepare_replay(
                record.cancel_request_id, running_stale_before=target.stale_before
            )
        except ReplayRefusedError as refused:
            tally.already_succeeded += 1
            return f"skipped: {refused}"
        except RetryableError as error:
            tally.not_enqueued += 1
            return f"failed to enqueue: {error.message}"
        result = (await run_cancel_with_retries(self._canceller, self._policy, cancel)).result
        if isinstance(result, PaymentLinkCancelRejected):
            tally.failed_again += 1
            tally.reasons[result.reason] = tally.reasons.get(result.reason, 0) + 1
            return (
                f"cancel rejected again  {result.reason}{' (retryable)' if result.retryable else ''}: {result.message}"
            )
        tally.voided += 1
        return f"voided  {result.invoice_id}  (link {result.payment_link_id})"


def _replay_fields(target: ReplayTarget) -> dict[str, object]:
    if target.cancel is not None:
        cancel = target.cancel
        return {"cancel_request_id": cancel.cancel_request_id, "payment_link_id": cancel.payment_link_id}
    record = target.record
    if record is None:
        return {"payment_link_id": target.payment_link_id}
    return {
        "payment_link_id": record.payment_link_id,
        "event_id": record.payment_link_id,
        "correlation_id": record.request.get("correlation_id"),
        "account_id": record.account_id,
    }
