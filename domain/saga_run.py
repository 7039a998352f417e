"""What every pass over a saga record shares: its ports, the clock, the version-checked save, and the
step history it writes along with each save (``domain.saga_history``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from domain.errors import PaylinkError, PermanentError, safe_message
from domain.events import PaymentLinkRequested, Step
from domain.intake import resolve_due_date
from domain.ports import Billing, Clock, CrmDirectory, SagaStore, Shortener, StepObserver, Unobserved
from domain.saga_history import COMPENSATION, EntryKind, HistoryEntry, Journal
from domain.saga_record import SagaFailure, SagaRecord

StepTimer = Callable[[Step, float], None]  # a forward step that ran and completed, its seconds


@dataclass(frozen=True)
class SagaPorts:
    crm: CrmDirectory
    billing: Billing
    shortener: Shortener
    store: SagaStore
    clock: Clock
    items_per_call: int = 1
    steps: StepObserver = field(default_factory=Unobserved)  # each step try (tracing)
    on_step: StepTimer | None = None  # each completed forward step's duration (metrics)


class RunBase:
    def __init__(self, ports: SagaPorts, record: SagaRecord, carried: Sequence[HistoryEntry] = ()) -> None:
        self._ports = ports
        self.record = record
        self.journal = Journal(carried)

    def now(self) -> datetime:
        return self._ports.clock.now()

    async def save(self, record: SagaRecord) -> SagaRecord:
        """Stores ``record`` (a transition of ``self.record``) with the journal's pending history entries,
        and makes the stored version current."""
        self.record = await self._ports.store.save(record.with_history(self.journal.pending))
        self.journal.take()  # only once stored: a failed save keeps them for the next one
        return self.record

    def note(self, kind: EntryKind, *, ids: dict[str, str] | None = None, error: PaylinkError | None = None) -> None:
        """A history entry of the current step, stored with the saga's next save."""
        self.journal.note(kind, self.record.attempt, self.now(), ids=ids, error=error)

    async def advance(self, record: SagaRecord, **ids: str) -> None:
        """Saves a forward step's progress, with its ``done`` history entry and the ids it produced."""
        self.note(EntryKind.DONE, ids=ids)
        await self.save(record)

    def advance_unsaved(self, record: SagaRecord, **ids: str) -> None:
        """Makes a forward step's progress current unsaved, with its ``done`` history entry: both ride along
        with the next save. Only for steps a resumed pass can repeat without duplicating anything, even
        after Stripe forgot their keys (ADRs 0016, 0018; ``domain.saga_steps``)."""
        self.note(EntryKind.DONE, ids=ids)
        self.record = record

    def note_result(self, event_id: str) -> None:
        """The result appended to the outbox with the next save, by its ``event_id``."""
        self.journal.begin("result", self.now())
        self.note(EntryKind.RESULT, ids={"event_id": event_id})

    async def journaled_undo(self, undo: Awaitable[None]) -> None:
        """Runs one compensation step, noting ``undone``, or ``undo_failed`` (then re-raised)."""
        self.journal.begin(COMPENSATION, self.now())
        ids = {"invoice_id": self.record.invoice_id} if self.record.invoice_id else {}
        try:
            await undo
        except PermanentError as error:
            self.note(EntryKind.UNDO_FAILED, ids=ids, error=error)
            raise
        self.note(EntryKind.UNDONE, ids=ids)


def started_record(request: PaymentLinkRequested, now: datetime) -> SagaRecord:
    """A new saga's first record, with its due date when it resolves: the ``validate`` step's outcome (and
    its history entry) then go in with the insert instead of a save of their own (ADR 0016). An invalid due
    date is left to the step, which fails the saga the usual way."""
    record = SagaRecord.start(request, now)
    try:
        due_date = resolve_due_date(request, now)
    except PermanentError:
        return record
    journal = Journal()
    journal.begin(Step.VALIDATE, now)
    journal.note(EntryKind.DONE, record.attempt, now, ids={"due_date": due_date.isoformat()})
    return record.with_due_date(due_date, now).with_history(journal.pending)


def event_message(record: SagaRecord, failure: SagaFailure) -> str:
    """The failure's message for the result event, naming the invoice left behind when compensation failed."""
    if failure.compensation_error is None:
        return failure.message
    return safe_message(
        f"{failure.message}; compensation failed, invoice {record.invoice_id} on {record.stripe_account} "
        f"needs manual cleanup: {failure.compensation_error}"
    )


def log_context(record: SagaRecord) -> dict[str, object]:
    """The saga's identity on its log lines."""
    return {"payment_link_id": record.payment_link_id, "account_id": record.account_id, "attempt": record.attempt}
