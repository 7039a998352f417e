"""In-memory ``CancelStore`` (documents round-trip through ``to_document``, versions enforced, breakable
with ``faults``), and the wiring of a ``LinkCanceller`` on a ``World``'s fakes.

``crash_at_save(n, persisted=…)`` simulates the process dying at the n-th save from now (1-based), after
the write (``persisted=True``) or before it, like ``FakeSagaStore``'s.
"""

from __future__ import annotations

import copy
from typing import Any

from domain.cancel import CancelPorts, LinkCanceller
from domain.cancel_record import CancelRecord
from domain.errors import ConcurrentUpdateError
from domain.lifecycle_service import LinkLifecycle
from tests.fakes.faults import FaultPlan, SimulatedCrash
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import World


class FakeCancelStore:
    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.faults = FaultPlan()
        self.saves = 0
        self._crash: tuple[int, bool] | None = None

    def crash_at_save(self, number: int, *, persisted: bool) -> None:
        self._crash = (self.saves + number, persisted)

    def record(self, cancel_request_id: str) -> CancelRecord:
        return CancelRecord.from_document(copy.deepcopy(self.documents[cancel_request_id]))

    async def create_if_absent(self, record: CancelRecord) -> CancelRecord:
        self.faults.check("create_if_absent")
        self.documents.setdefault(record.cancel_request_id, record.to_document())
        return self.record(record.cancel_request_id)

    async def load(self, cancel_request_id: str) -> CancelRecord | None:
        self.faults.check("load")
        return self.record(cancel_request_id) if cancel_request_id in self.documents else None

    async def find_for_link(self, payment_link_id: str, limit: int = 100) -> list[CancelRecord]:
        records = [self.record(key) for key in self.documents]
        return sorted((r for r in records if r.payment_link_id == payment_link_id), key=lambda r: r.created_at)[:limit]

    async def save(self, record: CancelRecord) -> CancelRecord:
        self.faults.check("save")
        self.saves += 1
        crash = self._crash is not None and self._crash[0] == self.saves
        if crash and self._crash is not None and not self._crash[1]:
            raise SimulatedCrash(f"crash before cancel save {self.saves}")
        stored = self.documents.get(record.cancel_request_id)
        if stored is None or stored["version"] != record.version:
            raise ConcurrentUpdateError(record.cancel_request_id, record.version)
        self.documents[record.cancel_request_id] = record.model_copy(
            update={"version": record.version + 1}
        ).to_document()
        if crash:
            raise SimulatedCrash(f"crash after cancel save {self.saves}")
        return self.record(record.cancel_request_id)


def canceller_for(world: World, lifecycles: FakeLifecycleStore, cancels: FakeCancelStore) -> LinkCanceller:
    """A canceller on ``world``'s fakes (a restarted process when called again)."""
    lifecycle = LinkLifecycle(sagas=world.store, store=lifecycles, outbox=world.outbox, clock=world.clock)
    ports = CancelPorts(
        sagas=world.store,
        cancels=cancels,
        lifecycles=lifecycles,
        lifecycle=lifecycle,
        billing=world.billing,
        outbox=world.outbox,
        clock=world.clock,
        ids=world.ids,
    )
    return LinkCanceller(ports)
