"""In-memory ``SagaStore`` and ``LifecycleStore`` (documents round-trip through ``to_document``, versions
are enforced, nothing shared with the caller) and ``Outbox`` (idempotent on ``event_id``), all breakable
with ``faults``.

``FakeLifecycleStore.before_save`` holds coroutines to run at the start of the next saves, one each
(before the version check): a test interleaves a second observer there, deterministically.

``FakeSagaStore.crash_at_save(n, persisted=…)`` simulates the process dying at the n-th save (1-based):
after the write (``persisted=True``: the step's result is kept) or before it (the step's effect on
Stripe happened, its record did not).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from opentelemetry import propagate

from domain.errors import ConcurrentUpdateError
from domain.lifecycle import LifecycleRecord
from domain.ports import OutputEvent
from domain.saga_record import FAILED_STATUSES, SagaRecord, SagaStatus
from domain.stored import StoredEvent
from tests.fakes.faults import FaultPlan, SimulatedCrash


class FakeSagaStore:
    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.faults = FaultPlan()
        self.saves = 0
        self._crash: tuple[int, bool] | None = None

    def crash_at_save(self, number: int, *, persisted: bool) -> None:
        self._crash = (self.saves + number, persisted)

    def record(self, payment_link_id: str) -> SagaRecord:
        return SagaRecord.from_document(copy.deepcopy(self.documents[payment_link_id]))

    async def create_if_absent(self, record: SagaRecord) -> SagaRecord:
        self.faults.check("create_if_absent")
        if record.payment_link_id not in self.documents:
            self.documents[record.payment_link_id] = record.to_document()
            return record  # the port: the same object when this call inserted it
        return self.record(record.payment_link_id)

    async def load(self, payment_link_id: str) -> SagaRecord | None:
        self.faults.check("load")
        return self.record(payment_link_id) if payment_link_id in self.documents else None

    async def save(self, record: SagaRecord) -> SagaRecord:
        self.faults.check("save")
        self.saves += 1
        crash = self._crash is not None and self._crash[0] == self.saves
        if crash and not self._crash_persists():
            raise SimulatedCrash(f"crash before save {self.saves}")
        stored = self.documents.get(record.payment_link_id)
        if stored is None or stored["version"] != record.version:
            raise ConcurrentUpdateError(record.payment_link_id, record.version)
        saved = record.model_copy(update={"version": record.version + 1})
        self.documents[record.payment_link_id] = saved.to_document()
        if crash:
            raise SimulatedCrash(f"crash after save {self.saves}")
        return SagaRecord.from_document(saved.to_document())

    def _crash_persists(self) -> bool:
        assert self._crash is not None
        return self._crash[1]

    async def find_replayable(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[SagaRecord]:
        records = [self.record(key) for key in self.documents]
        matching = [
            record
            for record in records
            if record.status in FAILED_STATUSES
            and (reason is None or (record.failure is not None and record.failure.reason == reason))
            and (account_id is None or record.account_id == account_id)
            and (since is None or record.updated_at >= since)
            and (until is None or record.updated_at < until)
        ]
        return sorted(matching, key=lambda record: record.updated_at)[:limit]

    async def find_created(
        self,
        *,
        account_id: str | None = None,
        since: datetime | None = None,
        due_before: date | None = None,
        limit: int = 1000,
    ) -> list[SagaRecord]:
        self.faults.check("find_created")
        records = [self.record(key) for key in self.documents]
        matching = [
            record
            for record in records
            if record.status is SagaStatus.CREATED
            and (account_id is None or record.account_id == account_id)
            and (since is None or record.updated_at >= since)
            and (due_before is None or (record.due_date is not None and record.due_date < due_before))
        ]
        return sorted(matching, key=lambda record: (record.updated_at, record.payment_link_id))[:limit]

    async def failures_by_reason(self, since: datetime) -> list[tuple[str, bool, int]]:
        records = [self.record(key) for key in self.documents]
        failures = [r.failure for r in records if r.status in FAILED_STATUSES and r.updated_at >= since]
        counted = Counter((f.reason.value, f.retryable) for f in failures if f is not None)
        return sorted((reason, retryable, count) for (reason, retryable), count in counted.items())

    async def count_by_status(self, since: datetime | None = None) -> dict[str, int]:
        records = [self.record(key) for key in self.documents]
        return dict(Counter(r.status.value for r in records if since is None or r.updated_at >= since))


class FakeLifecycleStore:
    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.faults = FaultPlan()
        self.saves = 0
        self.before_save: list[Callable[[], Awaitable[object]]] = []

    def record(self, payment_link_id: str) -> LifecycleRecord:
        return LifecycleRecord.from_document(copy.deepcopy(self.documents[payment_link_id]))

    async def create_if_absent(self, record: LifecycleRecord) -> LifecycleRecord:
        self.faults.check("create_if_absent")
        self.documents.setdefault(record.payment_link_id, record.to_document())
        return self.record(record.payment_link_id)

    async def load(self, payment_link_id: str) -> LifecycleRecord | None:
        self.faults.check("load")
        return self.record(payment_link_id) if payment_link_id in self.documents else None

    async def save(self, record: LifecycleRecord) -> LifecycleRecord:
        if self.before_save:
            await self.before_save.pop(0)()
        self.faults.check("save")
        self.saves += 1
        stored = self.documents.get(record.payment_link_id)
        if stored is None or stored["version"] != record.version:
            raise ConcurrentUpdateError(record.payment_link_id, record.version)
        self.documents[record.payment_link_id] = record.model_copy(update={"version": record.version + 1}).to_document()
        self.faults.check("save", after_effect=True)
        return self.record(record.payment_link_id)


class FakeOutbox:
    def __init__(self) -> None:
        self.events: dict[str, OutputEvent] = {}
        self.traces: dict[str, dict[str, str]] = {}  # event_id -> W3C context current at the append
        self.appends = 0
        self.faults = FaultPlan()

    async def append(self, event: OutputEvent) -> None:
        self.faults.check("append")
        self.appends += 1
        self.events.setdefault(event.event_id, event)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # what MongoOutbox stores with the entry
        self.traces.setdefault(event.event_id, carrier)
        self.faults.check("append", after_effect=True)

    async def append_unless_published(self, event: OutputEvent) -> None:
        # The fake never publishes: every stored event is "not yet published".
        await self.append(event)

    @property
    def ordered(self) -> list[OutputEvent]:
        return list(self.events.values())

    async def find_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """The stored events among ``event_ids``, in append order, all pending (the fake never publishes)."""
        wanted = set(event_ids)
        return [
            StoredEvent(e.event_id, e.event_type, e.model_dump_json().encode(), datetime.now(UTC))
            for e in self.events.values()
            if e.event_id in wanted
        ]
