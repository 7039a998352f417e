"""The ports the processes and commands use, beyond the domain's own (``domain.ports``).

Each is a ``typing.Protocol``: the composition root (``consumer.runtime.bootstrap``) passes MongoDB or
aiokafka implementations, the tests pass in-memory fakes. Nothing here imports a vendor library, so
the use cases (``consumer.app``) and the worker/relay loops can be exercised without Kafka or MongoDB.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from domain.cancel_record import CancelRecord
from domain.notifications import Notification
from domain.ports import CancelStore, LifecycleStore
from domain.saga_record import SagaRecord
from domain.stored import DeadLetter, LeaseState, OutboxEntry, StoredEvent


class Unreachable(Exception):
    """A dependency (Kafka, MongoDB) did not answer in time: commands exit with "unreachable" (3)."""


class ConsumedMessage(Protocol):
    """One record as a Kafka consumer hands it over (aiokafka's ``ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RebalanceListener(Protocol):
    async def on_partitions_revoked(self, revoked: Any) -> None: ...
    async def on_partitions_assigned(self, assigned: Any) -> None: ...


class MessageConsumer(Protocol):
    """The consumer-group client the worker drives (a subset of ``AIOKafkaConsumer``).

    Guarantees the worker relies on: ``getmany`` returns records of assigned, unpaused partitions in
    offset order per partition; the listener's ``on_partitions_revoked`` is awaited before a partition
    moves to another member; ``commit`` stores exactly the offsets given (the next offset to read).
    """

    def subscribe(self, topics: list[str], listener: Any) -> None: ...
    def assignment(self) -> set[Any]: ...
    def paused(self) -> set[Any]: ...
    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...
    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any: ...
    async def commit(self, offsets: Any = None) -> None: ...


class MessageProducer(Protocol):
    """The producer the relay sends with (a subset of ``AIOKafkaProducer``): ``send`` returns once the
    record is queued, with an awaitable that settles when the broker acknowledged it (or failed)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
    ) -> Any: ...

    async def stop(self) -> None:
        """Flushes what is queued and closes the connections."""
        ...


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
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int | None = None,
    ) -> str:
        """Stores the raw message, with its Kafka key, headers and timestamp, under ``topic:partition:offset``
        (a repeat counts an attempt, keeps the first record); returns its id. ``RetryableError`` when the
        store is unavailable."""
        ...


class DeadLetterArchive(DeadLetterSink, Protocol):
    """Dead letters for operators: read, list newest first, purge by filters or by id, mark retried."""

    async def get(self, letter_id: str) -> DeadLetter | None: ...
    async def find(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        event_id: str | None = None,
    ) -> list[DeadLetter]: ...
    async def count(self, since: datetime | None = None) -> int:
        """Dead letters whose latest failure is at or after ``since`` (all when None)."""
        ...

    async def delete(self, letter_id: str) -> bool:
        """Deletes one dead letter; False when there was none."""
        ...

    async def mark_retried(self, letter_id: str, event_id: str, at: datetime) -> bool:
        """Records that the letter was re-published as ``event_id``; False (nothing changed) when it was
        already marked retried."""
        ...

    async def purge(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int: ...


class OutboxReader(Protocol):
    """The relay's side of the outbox."""

    async def unpublished(self, limit: int, after_seq: int | None = None) -> list[OutboxEntry]:
        """The oldest entries not yet marked published, in insertion order; with ``after_seq``, only
        those above it (the relay reads past a batch it is still marking)."""
        ...

    async def mark_published(
        self, entries: list[OutboxEntry], positions: Mapping[str, tuple[int, int]] | None = None
    ) -> None:
        """Marks ``entries`` published, with each one's Kafka ``(partition, offset)`` from ``positions``
        (by event id) when known; marking one twice is harmless."""
        ...

    async def purge_published(self, older_than: timedelta) -> int:
        """Deletes entries published more than ``older_than`` ago; returns how many."""
        ...

    async def backlog(self) -> tuple[int, datetime | None]:
        """How many entries wait, and when the oldest was appended."""
        ...


class EventLookup(Protocol):
    """Outbox entries by event id, for ``paylink show``."""

    async def find_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """The events among ``event_ids`` that are pending or published within the retention, in insertion
        order."""
        ...


class LifecycleArchive(LifecycleStore, Protocol):
    """Lifecycle records for operators: the domain's store plus counts for ``paylink status``."""

    async def count_by_status(self) -> dict[str, int]:
        """Links per lifecycle status, plus ``overdue``: how many of them are overdue."""
        ...


class OutboxArchive(OutboxReader, EventLookup, Protocol):
    """The outbox for operators: the relay's side plus lookups by event id."""


class CancelArchive(CancelStore, Protocol):
    """Cancel records for operators: the domain's store plus the cancels of one link."""

    async def find_for_link(self, payment_link_id: str, limit: int = 100) -> list[CancelRecord]: ...


class Lease(Protocol):
    """A named lease: at most one owner holds it at a time, until it expires unless renewed."""

    owner: str

    async def acquire(self) -> bool:
        """Takes or renews the lease for ``owner``; True when held now."""
        ...

    async def release(self) -> None:
        """Gives the lease up at once, so a standby can take over."""
        ...

    async def current(self) -> LeaseState | None:
        """The lease's holder and expiry (None if never held)."""
        ...


class SagaQueries(Protocol):
    """Reads of stored sagas for replay and status (writes go through ``domain.ports.SagaStore``)."""

    async def load(self, payment_link_id: str) -> SagaRecord | None: ...
    async def find_replayable(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[SagaRecord]:
        """Failed sagas (oldest update first) matching the filters."""
        ...

    async def count_by_status(self, since: datetime | None = None) -> dict[str, int]: ...
    async def failures_by_reason(self, since: datetime) -> list[tuple[str, bool, int]]:
        """(reason, retryable, count) of sagas that ended failed or compensation_failed since ``since``,
        sorted."""
        ...

    async def find_created(
        self,
        *,
        account_id: str | None = None,
        since: datetime | None = None,
        due_before: date | None = None,
        limit: int = 1000,
    ) -> list[SagaRecord]:
        """For ``paylink reconcile`` and the overdue scan: sagas with status ``created`` (their link
        exists, whether or not a lifecycle record has been stored for it yet), matching the filters
        (``account_id``; ``since <= updated_at``; ``due_date < due_before``), oldest ``updated_at``
        first, ties by ``payment_link_id``, at most ``limit``. Passing the last record's ``updated_at``
        as ``since`` pages on, as long as fewer than ``limit`` records share one ``updated_at``
        (microseconds: in practice one); the records at the boundary come again, and observing a link
        twice is harmless. ``RetryableError`` on store faults."""
        ...


class Job(Protocol):
    """A prepared message: messages with the same ``serial_key`` are handled one after the other."""

    @property
    def serial_key(self) -> Hashable | None: ...


class MessageHandler(Protocol):
    def prepare(self, record: ConsumedMessage) -> Job:
        """Decodes a record cheaply; never raises (bad input becomes a job that dead-letters)."""
        ...

    async def handle(self, job: Any) -> None:
        """Returns once the job's outcome is durable; raises only when cancelled."""
        ...


class WebhookReader(Protocol):
    def read(self, payload: bytes, signature: str | None) -> Notification:
        """The delivery's event, once its signature matches a configured secret within the tolerance;
        ``domain.notifications.InvalidSignature`` or ``InvalidPayload`` otherwise. Never logs or echoes
        a secret or the signature."""
        ...
