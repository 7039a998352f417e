"""Contract of ``Outbox`` (domain/ports.py): the same tests on ``FakeOutbox`` and ``MongoOutbox``.

The port only appends; what the relay will publish is read through each implementation's own view:
``FakeOutbox.ordered`` and ``MongoOutbox.unpublished`` (seq order), parsed back into events.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from typing import Any, Protocol

import pytest
from pydantic import TypeAdapter
from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.outbox import MongoOutbox
from domain.errors import Reason
from domain.events import PaymentLinkCreated, PaymentLinkFailed, ResultEvent, Step
from domain.ports import Outbox
from tests.fakes.stores import FakeOutbox

Event = PaymentLinkCreated | PaymentLinkFailed
EVENTS: TypeAdapter[Event] = TypeAdapter(ResultEvent)


class Stored(Protocol):
    """(kafka key, event) in the order the relay would publish them."""

    async def __call__(self) -> list[tuple[str | None, Event]]: ...


class OutboxHarness:
    def __init__(self, outbox: Outbox, stored: Stored) -> None:
        self.outbox = outbox
        self.stored = stored

    async def event_ids(self) -> list[str]:
        return [event.event_id for _, event in await self.stored()]


def fake_harness() -> OutboxHarness:
    fake = FakeOutbox()

    async def stored() -> list[tuple[str | None, Event]]:
        return [(event.contact_id, event) for event in fake.ordered if isinstance(event, Event)]

    return OutboxHarness(fake, stored)


def mongo_harness(database: AsyncDatabase[dict[str, Any]]) -> OutboxHarness:
    mongo = MongoOutbox(database)

    async def stored() -> list[tuple[str | None, Event]]:
        entries = await mongo.unpublished(limit=10_000)
        seqs = [entry.seq for entry in entries]
        assert seqs == sorted(set(seqs)), f"seq must order entries without ties: {seqs}"
        assert await database["outbox"].count_documents({}) == len(entries)  # nothing stored beside them
        return [(entry.key, EVENTS.validate_json(entry.payload)) for entry in entries]

    return OutboxHarness(mongo, stored)


@pytest.fixture(params=["fake", pytest.param("mongo", marks=pytest.mark.integration)])
def implementation(request: pytest.FixtureRequest) -> OutboxHarness:
    if request.param == "fake":
        return fake_harness()
    return mongo_harness(request.getfixturevalue("mongo_db"))


@pytest.fixture
async def box(implementation: OutboxHarness) -> OutboxHarness:
    if isinstance(implementation.outbox, MongoOutbox):
        await implementation.outbox.ensure_indexes()  # as at start-up (adapters/mongo/setup.py)
    return implementation


def created(contact_id: str = "con-1", **overrides: Any) -> PaymentLinkCreated:
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime(2030, 1, 15, 9, 30, 0, 250000, tzinfo=UTC),
        "payment_link_id": str(uuid.uuid4()),
        "correlation_id": "corr-1",
        "account_id": "acc-1",
        "contact_id": contact_id,
        "stripe_account": "acct_1",
        "customer_id": "cus_1",
        "invoice_id": "in_1",
        "invoice_number": "INV-0001",
        "status": "open",
        "amount_due": 18000,
        "currency": "usd",
        "due_date": date(2030, 1, 29),
        "hosted_invoice_url": "https://invoice.stripe.test/in_1",
        "invoice_pdf": "https://invoice.stripe.test/in_1/pdf",
        "short_url": None,
        "url": "https://invoice.stripe.test/in_1",
    }
    return PaymentLinkCreated(**{**fields, **overrides})


def failed(contact_id: str | None = "con-1", **overrides: Any) -> PaymentLinkFailed:
    fields: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime(2030, 1, 15, 9, 31, tzinfo=UTC),
        "payment_link_id": str(uuid.uuid4()),
        "account_id": "acc-1" if contact_id else None,
        "contact_id": contact_id,
        "reason": Reason.PRICE_NOT_FOUND,
        "message": 'No such price: "price_x" — ünïcødé survives',
        "retryable": False,
        "failed_step": Step.ITEMS,
        "compensated": True,
        "attempt": 1,
    }
    return PaymentLinkFailed(**{**fields, **overrides})


async def test_append_stores_the_event_keyed_by_contact(box: OutboxHarness) -> None:
    event = created(contact_id="con-42")

    await box.outbox.append(event)

    assert await box.stored() == [("con-42", event)]


async def test_an_unparseable_inputs_failure_has_no_key(box: OutboxHarness) -> None:
    event = failed(contact_id=None, reason=Reason.INVALID_EVENT, failed_step=Step.VALIDATE)

    await box.outbox.append(event)

    assert await box.stored() == [(None, event)]


async def test_append_is_idempotent_on_event_id(box: OutboxHarness) -> None:
    event = created()
    await box.outbox.append(event)
    await box.outbox.append(event)
    # A re-append after a crash may rebuild the event: same event_id, other details. The first one stays.
    await box.outbox.append(event.model_copy(update={"short_url": "https://pl.test/x", "url": "https://pl.test/x"}))

    assert await box.stored() == [(event.contact_id, event)]


async def test_entries_keep_insertion_order(box: OutboxHarness) -> None:
    events: list[Event] = [
        created(contact_id="con-b"),
        failed(contact_id="con-a"),
        created(contact_id="con-c"),
        failed(contact_id=None),
        created(contact_id="con-a"),
    ]
    for event in events:
        await box.outbox.append(event)
    await box.outbox.append(events[0])  # a repeat does not move an entry to the end

    assert await box.stored() == [(event.contact_id, event) for event in events]


async def test_concurrent_appends_of_one_event_store_it_once(box: OutboxHarness) -> None:
    event = failed()

    await asyncio.gather(*(box.outbox.append(event) for _ in range(6)))

    assert await box.stored() == [(event.contact_id, event)]


async def test_concurrent_appends_of_distinct_events_store_each_once(box: OutboxHarness) -> None:
    before = created()
    await box.outbox.append(before)
    events = [created(contact_id=f"con-{n}") if n % 2 else failed(contact_id=f"con-{n}") for n in range(24)]

    await asyncio.gather(*(box.outbox.append(event) for event in events))
    after = failed()
    await box.outbox.append(after)

    ids = await box.event_ids()
    assert sorted(ids[1:-1]) == sorted(event.event_id for event in events)
    assert (ids[0], ids[-1]) == (before.event_id, after.event_id)  # strictly earlier / later appends stay so


async def test_concurrent_first_appends_on_an_empty_outbox(box: OutboxHarness) -> None:
    events = [created(contact_id=f"con-{n}") for n in range(6)]

    await asyncio.gather(*(box.outbox.append(event) for event in events))

    assert sorted(await box.event_ids()) == sorted(event.event_id for event in events)


async def test_append_unless_published_appends_what_was_never_stored(box: OutboxHarness) -> None:
    event = created()
    await box.outbox.append_unless_published(event)
    await box.outbox.append_unless_published(event)
    assert await box.event_ids() == [event.event_id]


@pytest.mark.integration
async def test_append_unless_published_does_not_publish_a_published_event_again(mongo_db: Any) -> None:
    outbox = MongoOutbox(mongo_db)
    await outbox.ensure_indexes()
    event = created()
    await outbox.append(event)
    await outbox.mark_published(await outbox.unpublished(10))

    await outbox.append_unless_published(event)
    assert await outbox.unpublished(10) == [], "kept as published: not queued again"
    await outbox.append(event)
    assert [e.event_id for e in await outbox.unpublished(10)] == [event.event_id], "a plain append queues it again"


async def test_find_events_returns_the_named_pending_events_in_append_order(box: OutboxHarness) -> None:
    first, second, other = created(), failed(), created(contact_id="con-2")
    for event in (first, second, other):
        await box.outbox.append(event)
    finder = box.outbox
    assert isinstance(finder, FakeOutbox | MongoOutbox)

    found = await finder.find_events([second.event_id, first.event_id, "not-stored"])

    assert [(e.event_id, e.event_type, e.published) for e in found] == [
        (first.event_id, "PaymentLinkCreated", False),
        (second.event_id, "PaymentLinkFailed", False),
    ]
    assert EVENTS.validate_json(found[0].payload) == first
    assert await finder.find_events([]) == []
