"""``paylink replay``: re-runs chosen failed sagas in this process, to a new result in the outbox.

Each saga resumes from its recorded state (``PaymentLinkSaga.replay`` semantics) under the worker's
retry policy: transient faults are retried with backoff and, when retries run out, the saga gives up
retryably again (``PaymentLinkFailed(retryable=true)``, replayable later). The relay publishes the new
result. Sagas that are unknown, still running or already created are skipped, never re-run.
Targets are fixed before the first replay, so a saga that fails again is not picked up twice.

A running (or compensating) saga not saved for ``stale_after`` is abandoned, not running: a replay
killed between ``prepare_replay`` and the end of ``run`` leaves it so, and its Kafka message was
committed long ago.
Named by ``--event-id`` it resumes like a retryable failure (same keys). The filters do not select
such sagas (``find_replayable`` returns failed ones only): taking one over is an explicit act.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from consumer.commands import EXIT_FAILED, EXIT_OK, Progress, print_table, with_timeout
from consumer.settings import Settings
from domain.saga_record import IN_FLIGHT_STATUSES, SagaRecord, SagaStatus

if TYPE_CHECKING:
    from adapters.mongo.saga_store import MongoSagaStore
    from consumer.bootstrap import Components
    from domain.events import PaymentLinkRequested
    from domain.saga import Result


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
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        again = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
        return (
            f"replayed {self.created + self.failed_again} (created {self.created}, failed again "
            f"{self.failed_again}{f': {again}' if again else ''}); skipped {self.already_succeeded + self.running} "
            f"(already succeeded {self.already_succeeded}, still running {self.running}); "
            f"not found {self.not_found}; failed to enqueue {self.not_enqueued}"
        )

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed_again or self.not_found or self.not_enqueued else EXIT_OK


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
        failed = self.record is not None and self.record.status in (SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED)
        return failed or self.abandoned

    def row(self) -> list[object]:
        record, failure = self.record, self.record.failure if self.record else None
        if record is None:
            return [self.payment_link_id, "not found", None, None, None, None, None, None]
        return [
            self.payment_link_id,
            f"{record.status.value} (abandoned)" if self.abandoned else record.status.value,
            failure.reason.value if failure else None,
            failure.retryable if failure else None,
            failure.failed_step.value if failure else None,
            record.account_id,
            record.attempt,
            record.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ]


async def replay_targets(sagas: MongoSagaStore, selection: ReplaySelection) -> list[ReplayTarget]:
    if selection.event_ids:
        stale_before = datetime.now(UTC) - selection.stale_after
        return [ReplayTarget(i, await sagas.load(i), stale_before) for i in dict.fromkeys(selection.event_ids)]
    records = await sagas.find_replayable(
        reason=selection.reason,
        account_id=selection.account,
        since=selection.since,
        until=selection.until,
        limit=selection.limit,
    )
    return [ReplayTarget(record.payment_link_id, record) for record in records]


async def run_replay(
    settings: Settings, selection: ReplaySelection, *, dry_run: bool = False, concurrency: int = 4
) -> int:
    from consumer.bootstrap import open_components

    settings = settings.model_copy(update={"mongodb_uri": with_timeout(settings.mongodb_uri)})
    async with open_components(settings) as components:
        targets = await replay_targets(components.sagas, selection)
        if dry_run:
            headers = ["PAYMENT_LINK_ID", "STATUS", "REASON", "RETRYABLE", "STEP", "ACCOUNT", "ATTEMPT", "UPDATED_AT"]
            print_table(headers, [target.row() for target in targets])
            print(f"{sum(t.replayable for t in targets)} of {len(targets)} would be replayed")
            return EXIT_OK
        tally = ReplayTally()
        progress = Progress(len(targets), "replaying")
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(target: ReplayTarget) -> None:
            async with gate:
                progress.line(f"{target.payment_link_id}  {await replay_one(components, target, tally)}")
                progress.advance()

        try:
            await asyncio.gather(*(one(target) for target in targets))
        finally:
            progress.close()
        print(tally.summary())
        return tally.exit_code


async def replay_one(components: Components, target: ReplayTarget, tally: ReplayTally) -> str:
    """Re-runs one saga to its new result (in the outbox); returns the line that reports it."""
    from domain.errors import ReplayRefusedError, RetryableError
    from domain.events import PaymentLinkCreated

    if target.record is None:
        tally.not_found += 1
        return "not found"
    if target.record.status is SagaStatus.CREATED or (
        target.record.status in IN_FLIGHT_STATUSES and not target.abandoned
    ):
        succeeded = target.record.status is SagaStatus.CREATED
        tally.already_succeeded += succeeded
        tally.running += not succeeded
        return "skipped: already succeeded" if succeeded else "skipped: still running"
    try:
        # The cutoff goes along: prepare_replay re-checks it on the saga as stored now, in case a
        # runner saved it since the targets were read.
        request = await components.saga.prepare_replay(target.payment_link_id, running_stale_before=target.stale_before)
    except ReplayRefusedError as refused:  # a worker (or another replay) got there first
        tally.running += 1
        return f"skipped: {refused}"
    except RetryableError as error:
        tally.not_enqueued += 1
        return f"failed to enqueue: {error.message}"
    try:
        result = await _run_with_retries(components, request)
    except RetryableError as error:
        tally.not_enqueued += 1
        return f"failed to enqueue: {error.message} (the saga stays running; replay it again later)"
    if isinstance(result, PaymentLinkCreated):
        tally.created += 1
        return f"created  {result.invoice_id}  {result.url}"
    tally.failed_again += 1
    tally.reasons[result.reason] = tally.reasons.get(result.reason, 0) + 1
    return f"failed again  {result.reason}{' (retryable)' if result.retryable else ''}: {result.message}"


async def _run_with_retries(components: Components, request: PaymentLinkRequested) -> Result:
    """The worker's policy: transient faults retried with backoff, then the saga gives up retryably."""
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
    from tenacity.wait import wait_random_exponential

    from domain.errors import RetryableError

    settings, saga = components.settings, components.saga
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RetryableError),
        stop=stop_after_attempt(settings.retry_attempts),
        wait=wait_random_exponential(multiplier=settings.retry_initial_s, max=settings.retry_max_s),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await saga.run(request)
    except RetryableError as error:
        return await saga.give_up(request, error, attempts=settings.retry_attempts)
    raise AssertionError("tenacity always returns or raises")  # pragma: no cover
