"""The saga's step history: what each pass over a saga did, kept in the saga record for ``paylink show``.

One ``HistoryEntry`` per thing that happened to the saga: a forward step that saved progress
(``done``, with the ids it produced), a transient failure the worker retried (``retry``), a permanent
failure (``failed``), the worker giving up (``gave_up``), a compensation step (``undone`` /
``undo_failed``), a result appended to the outbox (``result``, with its ``event_id``) and a replay
re-opening the saga (``replayed``). Every entry carries the record's ``attempt`` (1, then + 1 per
replay), so earlier attempts stay readable after a replay: entries are only ever appended.

The bound: a record keeps the newest ``HISTORY_LIMIT`` entries; older ones are dropped and counted in
``SagaHistory.dropped``. An entry holds at most a few short strings (messages are already bounded by
``domain.errors.safe_message`` to 1000 characters), so the history adds at most ~80 KB to a saga
document, a few KB in practice.

The history costs no store operation of its own: entries ride along with the saves the saga makes
anyway (``SagaRecord.with_history``), and a transient failure, which saves nothing, is carried in
memory to the saga's next save in the same process (lost if the process stops in between).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from domain.errors import PaylinkError, Reason

HISTORY_LIMIT = 64
CARRIED_SAGAS_LIMIT = 10_000
HISTORY_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
COMPENSATION = "compensation"  # the ``step`` of a compensation or a result entry outside any forward step


class EntryKind(StrEnum):
    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"
    GAVE_UP = "gave_up"
    UNDONE = "undone"
    UNDO_FAILED = "undo_failed"
    RESULT = "result"
    REPLAYED = "replayed"


class HistoryEntry(BaseModel):
    """One thing that happened: a step (``validate`` … ``shorten``, ``compensation``, or ``saga``) of an attempt."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kind: EntryKind
    step: str
    attempt: int
    started_at: datetime
    ended_at: datetime
    ids: dict[str, str] = Field(default_factory=dict, description="Stripe/shortener ids the step produced")
    reason: Reason | None = None
    retryable: bool | None = None
    message: str | None = None

    @field_serializer("started_at", "ended_at")
    def _fixed_width_utc(self, moment: datetime) -> str:
        return moment.astimezone(UTC).strftime(HISTORY_TIMESTAMP_FORMAT)


class SagaHistory(BaseModel):
    """The newest ``HISTORY_LIMIT`` entries, oldest first, and how many older ones were dropped."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    entries: tuple[HistoryEntry, ...] = ()
    dropped: int = 0

    def plus(self, added: Sequence[HistoryEntry]) -> SagaHistory:
        """This history with ``added`` appended; the oldest entries beyond the bound are dropped and counted."""
        combined = (*self.entries, *added)
        excess = max(0, len(combined) - HISTORY_LIMIT)
        return SagaHistory(entries=combined[excess:], dropped=self.dropped + excess)


class Journal:
    """The entries of one pass over a saga not stored yet: the next save of the saga takes them along."""

    def __init__(self, carried: Sequence[HistoryEntry] = ()) -> None:
        self._pending = list(carried)
        self.step = "saga"
        self.started_at: datetime | None = None

    def begin(self, step: str, now: datetime) -> None:
        """A step starts: the entries noted from now on are this step's, started ``now``."""
        self.step, self.started_at = step, now

    def note(
        self,
        kind: EntryKind,
        attempt: int,
        now: datetime,
        *,
        ids: dict[str, str] | None = None,
        error: PaylinkError | None = None,
    ) -> None:
        self._pending.append(
            HistoryEntry(
                kind=kind,
                step=self.step,
                attempt=attempt,
                started_at=self.started_at or now,
                ended_at=now,
                ids=ids or {},
                reason=error.reason if error else None,
                retryable=error.retryable if error else None,
                message=error.message if error else None,
            )
        )

    @property
    def pending(self) -> tuple[HistoryEntry, ...]:
        return tuple(self._pending)

    def take(self) -> tuple[HistoryEntry, ...]:
        """The pending entries, handed over once (to the save that stores them)."""
        taken, self._pending = tuple(self._pending), []
        return taken


class CarriedHistory:
    """Unsaved entries per saga, from passes that ended in a transient failure (which saves nothing),
    until the saga's next save in this process takes them. At most ``CARRIED_SAGAS_LIMIT`` sagas, each
    with its newest ``HISTORY_LIMIT`` entries: beyond, the saga carried longest ago is forgotten."""

    def __init__(self, limit: int = CARRIED_SAGAS_LIMIT) -> None:
        self._limit = limit
        self._entries: dict[str, tuple[HistoryEntry, ...]] = {}

    def keep(self, payment_link_id: str, entries: Sequence[HistoryEntry]) -> None:
        self._entries.pop(payment_link_id, None)
        if len(self._entries) >= self._limit:
            del self._entries[next(iter(self._entries))]
        self._entries[payment_link_id] = tuple(entries[-HISTORY_LIMIT:])

    def take(self, payment_link_id: str) -> tuple[HistoryEntry, ...]:
        return self._entries.pop(payment_link_id, ())

    def __len__(self) -> int:
        return len(self._entries)
