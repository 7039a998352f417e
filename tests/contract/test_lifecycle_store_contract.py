"""Contract of ``LifecycleStore`` (domain/ports.py): the same tests on ``FakeLifecycleStore`` and
``MongoLifecycleStore``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from adapters.mongo.lifecycle_store import MongoLifecycleStore
from domain.errors import ConcurrentUpdateError, Reason
from domain.lifecycle import InvoiceSnapshot, LifecycleRecord, LinkStatus, Observation
from domain.lifecycle_events import Source
from domain.ports import LifecycleStore
from tests.fakes.stores import FakeLifecycleStore

T0 = datetime(2030, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", "mongo"])
def implementation(request: pytest.FixtureRequest) -> LifecycleStore:
    if request.param == "fake":
        return FakeLifecycleStore()
    return MongoLifecycleStore(request.getfixturevalue("mongo_db"))


@pytest.fixture
async def store(implementation: LifecycleStore) -> LifecycleStore:
    if isinstance(implementation, MongoLifecycleStore):
        await implementation.ensure_indexes()  # as at start-up (adapters/mongo/setup.py)
    return implementation


def new_record(**changes: object) -> LifecycleRecord:
    record = LifecycleRecord(
        payment_link_id=str(uuid.uuid4()),
        account_id="acc_1",
        contact_id="con_1",
        stripe_account="acct_1",
        invoice_id="in_1",
        correlation_id="corr-1",
        due_date=date(2030, 1, 29),
        created_at=T0,
        updated_at=T0,
    )
    return record.model_copy(update=changes)


def full_record() -> LifecycleRecord:
    """A record with a story: uncollectible, overdue, a failed payment, one event not yet appended."""
    record = new_record()
    plus_2 = timezone(timedelta(hours=2))
    for n, (status, kind) in enumerate(
        [("open", "invoice.payment_failed"), ("uncollectible", "invoice.marked_uncollectible")], start=1
    ):
        seen = Observation(
            snapshot=InvoiceSnapshot(
                invoice_id="in_1",
                status=status,
                payment_link_id=record.payment_link_id,
                amount_remaining=8000,
                currency="usd",
                due_date=date(2030, 1, 20),
                marked_uncollectible_at=datetime(2030, 2, 1, 12, 0, 0, 654321, tzinfo=plus_2),
                attempt_count=1,
                failure_message="Your card was declined.",
            ),
            stripe_account="acct_1",
            source=Source.WEBHOOK,
            occurred_at=datetime(2030, 2, 1, 12, 0, 0, 123456, tzinfo=plus_2),
            stripe_event_id=f"evt_{n}",
            stripe_event_type=kind,
        )
        record = record.with_transitions(seen, T0 + timedelta(days=17, microseconds=n))
    ids = {entry.event["event_id"] for entry in record.history[:-1]}
    return record.with_appended(ids, T0 + timedelta(days=17, seconds=1))


async def test_create_if_absent_stores_and_returns_the_record(store: LifecycleStore) -> None:
    record = new_record()

    assert await store.create_if_absent(record) == record
    assert await store.load(record.payment_link_id) == record


async def test_create_if_absent_returns_the_existing_record(store: LifecycleStore) -> None:
    first = new_record()
    await store.create_if_absent(first)

    assert await store.create_if_absent(first.model_copy(update={"invoice_id": "in_other"})) == first
    assert await store.load(first.payment_link_id) == first


async def test_concurrent_first_observations_converge(store: LifecycleStore) -> None:
    base = new_record()
    candidates = [base.model_copy(update={"correlation_id": f"corr-{n}"}) for n in range(6)]

    answers = await asyncio.gather(*(store.create_if_absent(c) for c in candidates))

    assert all(answer == answers[0] for answer in answers) and answers[0] in candidates
    assert await store.load(base.payment_link_id) == answers[0]


async def test_load_is_none_for_a_link_without_a_record(store: LifecycleStore) -> None:
    await store.create_if_absent(new_record())

    assert await store.load(str(uuid.uuid4())) is None


async def test_a_record_with_its_story_round_trips(store: LifecycleStore) -> None:
    record = full_record()
    assert record.status is LinkStatus.UNCOLLECTIBLE and record.overdue and record.payment_failures == 1
    assert [entry.appended for entry in record.history] == [True, True, False]

    await store.create_if_absent(record)
    loaded = await store.load(record.payment_link_id)

    assert loaded == record
    assert loaded.updated_at == record.updated_at and loaded.history[0].at == record.history[0].at
    assert loaded.unappended == record.unappended and loaded.has_seen("evt_2")


async def test_save_bumps_the_version_and_replaces_the_record(store: LifecycleStore) -> None:
    record = await store.create_if_absent(full_record())

    first = await store.save(record.model_copy(update={"status": LinkStatus.PAID}))
    assert first.version == 1 and first.status is LinkStatus.PAID
    assert await store.load(record.payment_link_id) == first

    second = await store.save(first.model_copy(update={"history": [], "stripe_event_ids": []}))
    loaded = await store.load(record.payment_link_id)
    assert loaded == second and second.version == 2
    assert loaded is not None and loaded.history == [] and loaded.stripe_event_ids == []  # replaced, not merged


async def test_a_stale_save_raises_concurrent_update_error(store: LifecycleStore) -> None:
    record = await store.create_if_absent(new_record())
    winner = await store.save(record.model_copy(update={"status": LinkStatus.PAID}))

    with pytest.raises(ConcurrentUpdateError) as raised:
        await store.save(record.model_copy(update={"status": LinkStatus.UNCOLLECTIBLE}))

    assert raised.value.retryable and raised.value.reason is Reason.INTERNAL_ERROR
    assert await store.load(record.payment_link_id) == winner
    with pytest.raises(ConcurrentUpdateError):  # a version from the future is stale too
        await store.save(winner.model_copy(update={"version": 5}))
    assert await store.load(record.payment_link_id) == winner


async def test_saving_a_missing_record_raises_and_creates_nothing(store: LifecycleStore) -> None:
    record = new_record()

    with pytest.raises(ConcurrentUpdateError):
        await store.save(record)

    assert await store.load(record.payment_link_id) is None


async def test_concurrent_saves_of_one_version_let_exactly_one_win(store: LifecycleStore) -> None:
    for _ in range(3):
        record = await store.create_if_absent(new_record())
        writers = [record.model_copy(update={"stripe_event_ids": [f"evt_{n}"]}) for n in range(6)]

        outcomes = await asyncio.gather(*(store.save(w) for w in writers), return_exceptions=True)

        won = [o for o in outcomes if isinstance(o, LifecycleRecord)]
        lost = [o for o in outcomes if isinstance(o, ConcurrentUpdateError)]
        assert len(won) == 1 and len(lost) == len(writers) - 1, outcomes
        assert await store.load(record.payment_link_id) == won[0] and won[0].version == 1


async def test_the_caller_keeps_no_handle_on_the_stored_record(store: LifecycleStore) -> None:
    record = await store.create_if_absent(full_record())
    loaded = await store.load(record.payment_link_id)
    assert loaded is not None

    loaded.history[0].event["amount_remaining"] = -1  # a caller mutating what it was handed
    loaded.stripe_event_ids.append("evt_forged")

    assert await store.load(record.payment_link_id) == record
