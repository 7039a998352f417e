"""Contract of ``CancelStore`` (domain/ports.py): the same tests on ``FakeCancelStore`` and ``MongoCancelStore``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.mongo.cancel_store import MongoCancelStore
from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.cancel_record import CancelRecord, CancelStatus
from domain.errors import ConcurrentUpdateError, Reason
from domain.ports import CancelStore
from tests.fakes.cancels import FakeCancelStore

T0 = datetime(2030, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", "mongo"])
def store(request: pytest.FixtureRequest) -> CancelStore:
    if request.param == "fake":
        return FakeCancelStore()
    return MongoCancelStore(request.getfixturevalue("mongo_db"))


def new_record(**changes: object) -> CancelRecord:
    cancel = PaymentLinkCancelRequested(
        event_id=str(uuid.uuid4()),
        event_type="PaymentLinkCancelRequested",
        schema_version=1,
        occurred_at=datetime(2030, 1, 15, 9, 0, tzinfo=timezone(timedelta(hours=2))),
        correlation_id="corr-1",
        account_id="acc_1",
        payment_link_id=str(uuid.uuid4()),
        contact_id="con_1",
        reason="wrong amount",
    )
    return CancelRecord.start(cancel, T0).model_copy(update=changes)


def rejected(record: CancelRecord) -> PaymentLinkCancelRejected:
    return PaymentLinkCancelRejected(
        event_id=str(uuid.uuid4()),
        occurred_at=T0 + timedelta(microseconds=123456),
        payment_link_id=record.payment_link_id,
        cancel_request_id=record.cancel_request_id,
        account_id=record.account_id,
        contact_id=record.contact_id,
        reason=CancelRejection.STRIPE_UNAVAILABLE,
        message="gave up",
        retryable=True,
        attempt=1,
    )


async def test_create_if_absent_stores_the_record_and_returns_the_existing_one(store: CancelStore) -> None:
    first = new_record()

    assert await store.create_if_absent(first) == first
    assert await store.create_if_absent(first.model_copy(update={"account_id": "acc_other"})) == first
    assert await store.load(first.cancel_request_id) == first
    assert await store.load(str(uuid.uuid4())) is None


async def test_concurrent_first_deliveries_converge(store: CancelStore) -> None:
    base = new_record()
    candidates = [base.model_copy(update={"contact_id": f"con-{n}"}) for n in range(6)]

    answers = await asyncio.gather(*(store.create_if_absent(c) for c in candidates))

    assert all(answer == answers[0] for answer in answers) and answers[0] in candidates


async def test_a_record_with_its_result_round_trips(store: CancelStore) -> None:
    record = await store.create_if_absent(new_record())
    started = await store.save(record.voiding(T0 + timedelta(seconds=1)))
    ended = await store.save(started.gave_up(rejected(started), T0 + timedelta(seconds=2, microseconds=5)))

    loaded = await store.load(record.cancel_request_id)

    assert loaded == ended and ended.version == 2 and loaded.status is CancelStatus.GAVE_UP and loaded.void_started
    assert loaded.result_event() == rejected(started).model_copy(update={"event_id": loaded.result_event().event_id})
    assert loaded.request_event() == record.request_event() and loaded.updated_at == ended.updated_at


async def test_a_stale_save_raises_and_keeps_the_winner(store: CancelStore) -> None:
    record = await store.create_if_absent(new_record())
    winner = await store.save(record.voiding(T0))

    with pytest.raises(ConcurrentUpdateError) as raised:
        await store.save(record.done(rejected(record), T0))

    assert raised.value.retryable and raised.value.reason is Reason.INTERNAL_ERROR
    assert await store.load(record.cancel_request_id) == winner
    with pytest.raises(ConcurrentUpdateError):
        await store.save(winner.model_copy(update={"version": 7}))


async def test_saving_a_missing_record_raises_and_creates_nothing(store: CancelStore) -> None:
    record = new_record()

    with pytest.raises(ConcurrentUpdateError):
        await store.save(record)

    assert await store.load(record.cancel_request_id) is None


async def test_concurrent_saves_of_one_version_let_exactly_one_win(store: CancelStore) -> None:
    record = await store.create_if_absent(new_record())
    writers = [record.model_copy(update={"attempt": n}) for n in range(1, 7)]

    outcomes = await asyncio.gather(*(store.save(w) for w in writers), return_exceptions=True)

    won = [o for o in outcomes if isinstance(o, CancelRecord)]
    assert len(won) == 1 and sum(isinstance(o, ConcurrentUpdateError) for o in outcomes) == 5, outcomes
    assert await store.load(record.cancel_request_id) == won[0]


async def test_find_for_link_lists_the_links_cancels_oldest_first(store: CancelStore) -> None:
    first = new_record()
    link = first.payment_link_id
    second = new_record(payment_link_id=link, created_at=T0 + timedelta(minutes=1))
    other = new_record()
    for record in (second, other, first):
        await store.create_if_absent(record)
    archive = store
    assert isinstance(archive, FakeCancelStore | MongoCancelStore)

    found = await archive.find_for_link(link)

    assert [r.cancel_request_id for r in found] == [first.cancel_request_id, second.cancel_request_id]
    assert await archive.find_for_link(link, limit=1) == [first]
    assert await archive.find_for_link("no-such-link") == []
