"""In-memory ``SagaStore`` (documents round-trip through ``to_document``, versions are enforced) and
``Outbox`` (idempotent on ``event_id``), both breakable with ``faults``.

``FakeSagaStore.crash_at_save(n, persisted=…)`` simulates the process dying at the n-th save (1-based):
after the write (``persisted=True``: the step's result is kept) or before it (the step's effect on
Stripe happened, its record did not).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from domain.errors import ConcurrentUpdateError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.saga_record import FAILED_STATUSES, SagaRecord
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
        document = self.documents.setdefault(record.payment_link_id, record.to_document())
        return SagaRecord.from_document(copy.deepcopy(document))

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


class FakeOutbox:
    def __init__(self) -> None:
        self.events: dict[str, PaymentLinkCreated | PaymentLinkFailed] = {}
        self.appends = 0
        self.faults = FaultPlan()

    async def append(self, event: PaymentLinkCreated | PaymentLinkFailed) -> None:
        self.faults.check("append")
        self.appends += 1
        self.events.setdefault(event.event_id, event)
        self.faults.check("append", after_effect=True)

    @property
    def ordered(self) -> list[PaymentLinkCreated | PaymentLinkFailed]:
        return list(self.events.values())
