"""Applying what is seen of an invoice to its link: the one path shared by the webhook intake,
``paylink reconcile``, the overdue scan and cancellation.

``LinkLifecycle.observe`` guarantees:
- only the link's own invoice on the link's own connected account moves it: an observation whose
  invoice has no ``payment_link_id``, names an unknown link, another invoice or another Stripe account
  is ``IGNORED`` (a forged or foreign event can never move another tenant's link);
- a link whose saga is still running is ``PENDING`` (the caller retries later: Stripe redelivers);
- a link's ``PaymentLinkCreated`` is in the outbox before any of its lifecycle events (appended again,
  idempotently, when the link's first observation creates its record);
- transitions are claimed on the stored record first (version-checked), then their events appended to
  the outbox, then marked appended: concurrent observers never publish a transition the record does
  not hold, and an observer that died between claim and append leaves the events for the next one
  (every observation first appends what is still unappended). When ``observe`` returns, every event
  of the link is in the outbox;
- a Stripe event already applied is a ``DUPLICATE``: nothing new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import TypeAdapter

from domain.errors import ConcurrentUpdateError
from domain.events import PaymentLinkCreated
from domain.lifecycle import LifecycleRecord, Observation
from domain.lifecycle_events import LifecycleEvent
from domain.ports import Clock, LifecycleStore, Outbox, SagaStore
from domain.saga_record import SagaStatus

log = logging.getLogger("paylink.lifecycle")

MAX_CLAIMS = 5  # concurrent observers of one link each retry their claim this often before giving up


class Outcome(StrEnum):
    APPLIED = "applied"  # new transitions, published
    UNCHANGED = "unchanged"  # nothing new to tell
    DUPLICATE = "duplicate"  # this Stripe event was applied before
    IGNORED = "ignored"  # not a link of ours, or not this link's invoice/account
    PENDING = "pending"  # the link's saga is still running: try again later


@dataclass(frozen=True)
class Observed:
    outcome: Outcome
    reason: str = ""
    events: list[LifecycleEvent] = field(default_factory=list)
    record: LifecycleRecord | None = None


class LinkLifecycle:
    def __init__(self, *, sagas: SagaStore, store: LifecycleStore, outbox: Outbox, clock: Clock) -> None:
        self._sagas = sagas
        self._store = store
        self._outbox = outbox
        self._clock = clock

    async def observe(self, observation: Observation) -> Observed:
        record_or_refusal = await self._record_for(observation)
        if isinstance(record_or_refusal, Observed):
            return record_or_refusal
        record = record_or_refusal
        for _ in range(MAX_CLAIMS):
            record = await self._flush(record)
            if record.has_seen(observation.stripe_event_id):
                return Observed(Outcome.DUPLICATE, record=record)
            claimed = record.with_transitions(observation, self._clock.now())
            if claimed.history == record.history and not observation.stripe_event_id:
                return Observed(Outcome.UNCHANGED, record=record)
            try:
                record = await self._store.save(claimed)
            except ConcurrentUpdateError:
                reloaded = await self._store.load(record.payment_link_id)
                assert reloaded is not None  # lifecycle records are never deleted
                record = reloaded
                continue
            new = record.unappended
            record = await self._flush(record)
            events = [_event(entry.event) for entry in new]
            return Observed(Outcome.APPLIED if events else Outcome.UNCHANGED, events=events, record=record)
        raise ConcurrentUpdateError(record.payment_link_id, record.version)

    async def _record_for(self, observation: Observation) -> LifecycleRecord | Observed:
        link_id = observation.snapshot.payment_link_id
        if not link_id:
            return Observed(Outcome.IGNORED, "the invoice is not a payment link's (no metadata.payment_link_id)")
        existing = await self._store.load(link_id)
        if existing is not None:
            return self._check(existing, observation) or existing
        saga = await self._sagas.load(link_id)
        if saga is None:
            return Observed(Outcome.IGNORED, "unknown payment link")
        if saga.status is not SagaStatus.CREATED:
            if saga.is_terminal:
                return Observed(Outcome.IGNORED, f"the link's saga ended {saga.status.value}, not created")
            return Observed(Outcome.PENDING, "the link's saga is still running")
        created = saga.result
        assert isinstance(created, PaymentLinkCreated)  # a created saga stores its PaymentLinkCreated
        now = self._clock.now()
        fresh = LifecycleRecord(
            payment_link_id=link_id,
            account_id=created.account_id,
            contact_id=created.contact_id,
            stripe_account=created.stripe_account,
            invoice_id=created.invoice_id,
            correlation_id=created.correlation_id,
            due_date=created.due_date,
            created_at=now,
            updated_at=now,
        )
        refusal = self._check(fresh, observation)
        if refusal is not None:
            return refusal
        # The saga stores "created" before it appends PaymentLinkCreated: a worker that died in between
        # owes the append until the request is redelivered. Appending it here (idempotent on its
        # event_id) keeps every lifecycle event of a link behind its PaymentLinkCreated in the outbox.
        await self._outbox.append_unless_published(created)
        return await self._store.create_if_absent(fresh)

    @staticmethod
    def _check(record: LifecycleRecord, observation: Observation) -> Observed | None:
        if observation.snapshot.invoice_id != record.invoice_id:
            return Observed(Outcome.IGNORED, "the invoice is not the link's invoice")
        if observation.stripe_account != record.stripe_account:
            return Observed(Outcome.IGNORED, "the event comes from another Stripe account than the link's")
        return None

    async def _flush(self, record: LifecycleRecord) -> LifecycleRecord:
        """Appends the record's unappended events to the outbox, in order, then marks them appended.

        When another observer saved meanwhile, the reloaded record may owe events of its own claim:
        those are appended too (appending one again is a no-op), so on return nothing is owed.
        """
        for _ in range(MAX_CLAIMS):
            pending = record.unappended
            if not pending:
                return record
            for entry in pending:
                await self._outbox.append(_event(entry.event))
            marked = record.with_appended({entry.event["event_id"] for entry in pending}, self._clock.now())
            try:
                return await self._store.save(marked)
            except ConcurrentUpdateError:
                reloaded = await self._store.load(record.payment_link_id)
                assert reloaded is not None  # lifecycle records are never deleted
                record = reloaded
        raise ConcurrentUpdateError(record.payment_link_id, record.version)


_EVENTS: TypeAdapter[LifecycleEvent] = TypeAdapter(LifecycleEvent)


def _event(document: dict[str, object]) -> LifecycleEvent:
    return _EVENTS.validate_python(document)
