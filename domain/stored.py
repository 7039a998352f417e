"""What the stores hand back to the processes: outbox entries, dead letters, the relay lease's state.

Plain values, so that the relay, the CLI and the fakes can use them without knowing the store behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OutboxEntry:
    """A result event waiting for the relay; ``seq`` orders entries by insertion."""

    event_id: str
    seq: int
    key: str | None
    event_type: str
    payload: bytes
    created_at: datetime
    # W3C ``traceparent``/``tracestate`` of the span that produced the event (empty: none), for the relay.
    trace: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StoredEvent:
    """A result event as the outbox holds it, for ``paylink show``: pending, or published (with its Kafka
    partition and offset when the relay recorded them)."""

    event_id: str
    event_type: str
    payload: bytes
    created_at: datetime
    published_at: datetime | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def published(self) -> bool:
        return self.published_at is not None


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed, with where it came from and why."""

    id: str
    topic: str
    partition: int
    offset: int
    raw: bytes
    reason: str
    message: str
    event_id: str | None
    account_id: str | None
    first_failed_at: datetime
    attempts: int
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # the Kafka record's timestamp
    retried_as: str | None = None  # the event_id ``paylink dead-letters retry`` re-published it as
    retried_at: datetime | None = None


@dataclass(frozen=True)
class LeaseState:
    """Who holds (or last held) a lease, and until when."""

    owner: str
    expires_at: datetime
