"""What every pass over a saga record shares: its ports, the clock, the version-checked save, and the
step history it writes along with each save (``domain.saga_history``)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.errors import PaylinkError, PermanentError
from domain.ports import Billing, Clock, CrmDirectory, SagaStore, Shortener
from domain.saga_history import COMPENSATION, EntryKind, HistoryEntry, Journal
from domain.saga_record import SagaRecord


@dataclass(frozen=True)
class SagaPorts:
    crm: CrmDirectory
    billing: Billing
    shortener: Shortener
    store: SagaStore
    clock: Clock
    items_per_call: int = 1


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
