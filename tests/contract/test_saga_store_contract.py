"""Contract of ``SagaStore`` (domain/ports.py): the same tests on ``FakeSagaStore`` and ``MongoSagaStore``."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.mongo.saga_store import MongoSagaStore
from domain.billing import FinalizedInvoice
from domain.errors import ConcurrentUpdateError, Reason
from domain.events import PaymentLinkFailed, Step
from domain.ports import SagaStore
from domain.saga_record import SagaFailure, SagaRecord, SagaStatus
from tests.fakes.stores import FakeSagaStore
from tests.fakes.world import make_request

T0 = datetime(2030, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", pytest.param("mongo", marks=pytest.mark.integration)])
def implementation(request: pytest.FixtureRequest) -> SagaStore:
    if request.param == "fake":
        return FakeSagaStore()
    return MongoSagaStore(request.getfixturevalue("mongo_db"))


@pytest.fixture
async def store(implementation: SagaStore) -> SagaStore:
    if isinstance(implementation, MongoSagaStore):
        await implementation.ensure_indexes()  # as at start-up (adapters/mongo/setup.py)
    return implementation


def new_record(
    *,
    account_id: str = "acc_1",
    status: SagaStatus = SagaStatus.RUNNING,
    updated_at: datetime = T0,
    reason: Reason | None = None,
    metadata: dict[str, str] | None = None,
) -> SagaRecord:
    request = make_request(event_id=str(uuid.uuid4()), account_id=account_id, metadata=metadata or {"deal": "D-1"})
    record = SagaRecord.start(request, T0 - timedelta(hours=1))
    changes: dict[str, Any] = {"status": status, "updated_at": updated_at}
    if reason is not None:
        changes["failure"] = SagaFailure(
            reason=reason,
            message=f"failed: {reason}",
            retryable=reason is Reason.STRIPE_UNAVAILABLE,
            failed_step=Step.ITEMS,
        )
    return record.model_copy(update=changes)


def full_record() -> SagaRecord:
    """Every field set, request metadata keys with the characters MongoDB field names cannot hold."""
    record = new_record(metadata={"a.b": "dotted", "$where": "dollar", "x.$y": "both", "plain": "v"})
    created = datetime(2030, 1, 15, 9, 30, 1, 123456, tzinfo=timezone(timedelta(hours=2)))
    failed = PaymentLinkFailed(
        event_id=str(uuid.uuid4()),
        occurred_at=created,
        payment_link_id=record.payment_link_id,
        correlation_id="corr-1",
        account_id=record.account_id,
        contact_id=record.contact_id,
        reason=Reason.STRIPE_UNAVAILABLE,
        message="Stripe invoices.finalize failed (500): try again",
        retryable=True,
        failed_step=Step.FINALISE,
        compensated=False,
        attempt=2,
    )
    return record.model_copy(
        update={
            "status": SagaStatus.COMPENSATION_FAILED,
            "attempt": 2,
            "restarts": 1,
            "due_date": date(2030, 1, 29),
            "stripe_account": "acct_1",
            "description": "Invoice for Ada Lovelace",
            "customer_id": "cus_1",
            "invoice_id": "in_1",
            "items_added": 2,
            "invoice": FinalizedInvoice(
                id="in_1",
                number="INV-0001",
                status="open",
                amount_due=8000,
                currency="usd",
                hosted_invoice_url="https://invoice.stripe.test/in_1",
                invoice_pdf=None,
                due_date=1895140800,
            ),
            "shortened": True,
            "short_url": "https://pl.test/abc",
            "failure": SagaFailure(
                reason=Reason.STRIPE_UNAVAILABLE,
                message="gone",
                retryable=True,
                failed_step=Step.FINALISE,
                compensated=False,
                compensation_error="void failed: 500",
            ),
            "result": failed,
            "created_at": created,
            "updated_at": created + timedelta(microseconds=7),
        }
    )


# --- create_if_absent / load ---------------------------------------------------------------------------


async def test_create_if_absent_stores_and_returns_the_record(store: SagaStore) -> None:
    record = new_record()

    assert await store.create_if_absent(record) is record  # the very object: the saga's first pass knows it
    assert await store.load(record.payment_link_id) == record


async def test_create_if_absent_returns_the_existing_record(store: SagaStore) -> None:
    first = new_record()
    await store.create_if_absent(first)
    other = first.model_copy(update={"attempt": 7, "account_id": "acc_other", "customer_id": "cus_x"})

    assert await store.create_if_absent(other) == first
    assert await store.load(first.payment_link_id) == first


async def test_create_if_absent_of_an_equal_record_is_not_an_insert(store: SagaStore) -> None:
    first = new_record()
    await store.create_if_absent(first)
    equal = first.model_copy()

    assert await store.create_if_absent(equal) is not equal  # a second pass is told it resumes


async def test_concurrent_first_deliveries_converge(store: SagaStore) -> None:
    base = new_record()
    candidates = [base.model_copy(update={"attempt": n}) for n in range(1, 7)]

    answers = await asyncio.gather(*(store.create_if_absent(c) for c in candidates))

    assert all(answer == answers[0] for answer in answers)
    assert answers[0] in candidates
    assert await store.load(base.payment_link_id) == answers[0]


async def test_load_is_none_for_an_unknown_id(store: SagaStore) -> None:
    await store.create_if_absent(new_record())

    assert await store.load(str(uuid.uuid4())) is None


async def test_a_full_record_round_trips(store: SagaStore) -> None:
    record = full_record()

    await store.create_if_absent(record)
    loaded = await store.load(record.payment_link_id)

    assert loaded == record
    assert loaded is not None and loaded.request["metadata"] == {
        "a.b": "dotted",
        "$where": "dollar",
        "x.$y": "both",
        "plain": "v",
    }
    assert loaded.request_event() == record.request_event()
    assert loaded.updated_at == record.updated_at  # microseconds and the instant survive

    saved = await store.save(loaded.model_copy(update={"items_added": 3}))
    assert (
        await store.load(record.payment_link_id) == saved == record.model_copy(update={"items_added": 3, "version": 1})
    )


# --- save ------------------------------------------------------------------------------------------------


async def test_save_bumps_the_version_and_replaces_the_record(store: SagaStore) -> None:
    record = await store.create_if_absent(new_record())
    assert record.version == 0

    first = await store.save(record.model_copy(update={"customer_id": "cus_1", "stripe_account": "acct_1"}))
    assert first.version == 1 and first.customer_id == "cus_1"
    assert await store.load(record.payment_link_id) == first

    second = await store.save(first.model_copy(update={"customer_id": None, "invoice_id": "in_1"}))
    assert second.version == 2
    loaded = await store.load(record.payment_link_id)
    assert loaded == second
    assert loaded is not None and loaded.customer_id is None  # replaced, not merged


async def test_a_stale_save_raises_concurrent_update_error(store: SagaStore) -> None:
    record = await store.create_if_absent(new_record())
    winner = await store.save(record.model_copy(update={"customer_id": "cus_winner"}))

    with pytest.raises(ConcurrentUpdateError) as raised:
        await store.save(record.model_copy(update={"customer_id": "cus_loser"}))

    assert raised.value.retryable and raised.value.reason is Reason.INTERNAL_ERROR
    assert await store.load(record.payment_link_id) == winner
    with pytest.raises(ConcurrentUpdateError):  # a version from the future is stale too
        await store.save(winner.model_copy(update={"version": 5}))
    assert await store.load(record.payment_link_id) == winner


async def test_saving_a_missing_record_raises_and_creates_nothing(store: SagaStore) -> None:
    record = new_record()

    with pytest.raises(ConcurrentUpdateError):
        await store.save(record)

    assert await store.load(record.payment_link_id) is None


async def test_concurrent_saves_of_one_version_let_exactly_one_win(store: SagaStore) -> None:
    for _ in range(3):
        record = await store.create_if_absent(new_record())
        writers = [record.model_copy(update={"customer_id": f"cus_{n}"}) for n in range(6)]

        outcomes = await asyncio.gather(*(store.save(w) for w in writers), return_exceptions=True)

        won = [o for o in outcomes if isinstance(o, SagaRecord)]
        lost = [o for o in outcomes if isinstance(o, ConcurrentUpdateError)]
        assert len(won) == 1 and len(lost) == len(writers) - 1, outcomes
        assert await store.load(record.payment_link_id) == won[0]
        assert won[0].version == 1


# --- find_replayable --------------------------------------------------------------------------------------


@pytest.fixture
async def replayable(store: SagaStore) -> dict[str, SagaRecord]:
    """Named records in a shuffled insertion order; only failed/compensation_failed ones are replayable
    (never in-flight ones: running, compensating, or compensating stored in the old form)."""
    records = {
        "failed_price_A_3m": new_record(
            status=SagaStatus.FAILED,
            reason=Reason.PRICE_NOT_FOUND,
            account_id="acc_A",
            updated_at=T0 + timedelta(minutes=3),
        ),
        "created_A_0m": new_record(status=SagaStatus.CREATED, account_id="acc_A", updated_at=T0),
        "compfailed_unavail_A_1m": new_record(
            status=SagaStatus.COMPENSATION_FAILED,
            reason=Reason.STRIPE_UNAVAILABLE,
            account_id="acc_A",
            updated_at=T0 + timedelta(minutes=1),
        ),
        "old_form_compensating_A_30s": new_record(  # running with a failure: stored before compensating existed
            status=SagaStatus.RUNNING,
            reason=Reason.STRIPE_UNAVAILABLE,
            account_id="acc_A",
            updated_at=T0 + timedelta(seconds=30),
        ),
        "compensating_A_40s": new_record(
            status=SagaStatus.COMPENSATING,
            reason=Reason.PRICE_NOT_FOUND,
            account_id="acc_A",
            updated_at=T0 + timedelta(seconds=40),
        ),
        "failed_unavail_A_4m": new_record(
            status=SagaStatus.FAILED,
            reason=Reason.STRIPE_UNAVAILABLE,
            account_id="acc_A",
            updated_at=T0 + timedelta(minutes=4),
        ),
        "failed_unavail_B_2m": new_record(
            status=SagaStatus.FAILED,
            reason=Reason.STRIPE_UNAVAILABLE,
            account_id="acc_B",
            updated_at=T0 + timedelta(minutes=2),
        ),
        "failed_unavail_B_2m_1us": new_record(
            status=SagaStatus.FAILED,
            reason=Reason.STRIPE_UNAVAILABLE,
            account_id="acc_B",
            updated_at=T0 + timedelta(minutes=2, microseconds=1),
        ),
        "running_B_0m": new_record(status=SagaStatus.RUNNING, account_id="acc_B", updated_at=T0),
    }
    for record in records.values():
        await store.create_if_absent(record)
    return records


PLUS_5 = timezone(timedelta(hours=5))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param(
            {},
            [
                "compfailed_unavail_A_1m",
                "failed_unavail_B_2m",
                "failed_unavail_B_2m_1us",
                "failed_price_A_3m",
                "failed_unavail_A_4m",
            ],
            id="all-oldest-first",
        ),
        pytest.param(
            {"reason": "stripe_unavailable"},
            ["compfailed_unavail_A_1m", "failed_unavail_B_2m", "failed_unavail_B_2m_1us", "failed_unavail_A_4m"],
            id="reason",
        ),
        pytest.param({"reason": "price_not_found"}, ["failed_price_A_3m"], id="other-reason"),
        pytest.param({"reason": "invalid_event"}, [], id="no-match"),
        pytest.param(
            {"account_id": "acc_A"},
            ["compfailed_unavail_A_1m", "failed_price_A_3m", "failed_unavail_A_4m"],
            id="account",
        ),
        pytest.param(
            {"since": T0 + timedelta(minutes=2, microseconds=1)},
            ["failed_unavail_B_2m_1us", "failed_price_A_3m", "failed_unavail_A_4m"],
            id="since-inclusive",
        ),
        pytest.param(
            {"until": T0 + timedelta(minutes=2, microseconds=1)},
            ["compfailed_unavail_A_1m", "failed_unavail_B_2m"],
            id="until-exclusive",
        ),
        pytest.param(
            {
                "since": (T0 + timedelta(minutes=2)).astimezone(PLUS_5),
                "until": (T0 + timedelta(minutes=4)).astimezone(PLUS_5),
            },
            ["failed_unavail_B_2m", "failed_unavail_B_2m_1us", "failed_price_A_3m"],
            id="window-in-another-timezone",
        ),
        pytest.param(
            {"reason": "stripe_unavailable", "account_id": "acc_A", "since": T0 + timedelta(minutes=2)},
            ["failed_unavail_A_4m"],
            id="combined",
        ),
        pytest.param({"limit": 2}, ["compfailed_unavail_A_1m", "failed_unavail_B_2m"], id="limit-keeps-oldest"),
    ],
)
async def test_find_replayable_filters_and_orders(
    store: SagaStore, replayable: dict[str, SagaRecord], filters: dict[str, Any], expected: list[str]
) -> None:
    names = {record.payment_link_id: name for name, record in replayable.items()}

    found = await store.find_replayable(**filters)

    assert [names[record.payment_link_id] for record in found] == expected
    assert all(record == replayable[names[record.payment_link_id]] for record in found)


async def test_find_replayable_sees_saved_changes(store: SagaStore, replayable: dict[str, SagaRecord]) -> None:
    running = await store.load(replayable["running_B_0m"].payment_link_id)
    assert running is not None
    failed = await store.save(
        running.model_copy(
            update={
                "status": SagaStatus.FAILED,
                "updated_at": T0 + timedelta(minutes=10),
                "failure": SagaFailure(
                    reason=Reason.STRIPE_PERMISSION_DENIED, message="403", retryable=False, failed_step=Step.DRAFT
                ),
            }
        )
    )
    compensated = await store.load(replayable["failed_price_A_3m"].payment_link_id)
    assert compensated is not None
    await store.save(compensated.model_copy(update={"status": SagaStatus.CREATED}))

    found = await store.find_replayable(since=T0 + timedelta(minutes=3))

    assert [record.payment_link_id for record in found] == [
        replayable["failed_unavail_A_4m"].payment_link_id,
        failed.payment_link_id,
    ]
    assert await store.find_replayable(reason="stripe_permission_denied") == [failed]


# --- documents stored before the compensating status --------------------------------------------------------


@pytest.fixture
def raw(implementation: SagaStore, request: pytest.FixtureRequest) -> RawDocuments:
    """Writes and reads stored documents as they are, bypassing the store (an older version's writes)."""
    if isinstance(implementation, FakeSagaStore):
        return RawDocuments(fake=implementation)
    return RawDocuments(collection=request.getfixturevalue("mongo_db")["sagas"])


@dataclass
class RawDocuments:
    fake: FakeSagaStore | None = None
    collection: Any = None

    async def insert(self, record: SagaRecord) -> None:
        document = record.to_document()
        if self.fake is not None:
            self.fake.documents[record.payment_link_id] = document
        else:
            stored = {**document, "_id": record.payment_link_id, "request": json.dumps(document["request"])}
            await self.collection.insert_one(stored)

    async def status(self, payment_link_id: str) -> str:
        if self.fake is not None:
            return str(self.fake.documents[payment_link_id]["status"])
        document = await self.collection.find_one({"_id": payment_link_id})
        return str(document["status"])


def old_form_compensating() -> SagaRecord:
    """A permanent failure that still owes its compensation, as stored before ``compensating`` existed."""
    return new_record(status=SagaStatus.RUNNING, reason=Reason.PRICE_NOT_FOUND).model_copy(
        update={"stripe_account": "acct_1", "customer_id": "cus_1", "invoice_id": "in_1"}
    )


async def test_an_old_form_compensating_document_loads_as_compensating(store: SagaStore, raw: RawDocuments) -> None:
    old = old_form_compensating()
    await raw.insert(old)
    assert await raw.status(old.payment_link_id) == "running"

    loaded = await store.load(old.payment_link_id)

    assert loaded is not None and loaded.status is SagaStatus.COMPENSATING
    assert loaded.to_document() == {**old.to_document(), "status": "compensating"}
    assert await store.create_if_absent(SagaRecord.start(old.request_event(), T0)) == loaded
    assert await store.find_replayable() == []
    saved = await store.save(loaded)
    assert await raw.status(old.payment_link_id) == "compensating" and saved.status is SagaStatus.COMPENSATING


@pytest.mark.parametrize("implementation", ["mongo"], indirect=True)
async def test_counts_by_status_count_old_form_compensating_documents_as_compensating(
    store: SagaStore, raw: RawDocuments
) -> None:
    assert isinstance(store, MongoSagaStore)
    await raw.insert(old_form_compensating())
    await raw.insert(old_form_compensating().model_copy(update={"updated_at": T0 - timedelta(days=1)}))
    await store.create_if_absent(new_record(status=SagaStatus.RUNNING))
    await store.create_if_absent(new_record(status=SagaStatus.COMPENSATING, reason=Reason.PRICE_NOT_FOUND))
    await store.create_if_absent(new_record(status=SagaStatus.FAILED, reason=Reason.PRICE_NOT_FOUND))

    assert await store.count_by_status() == {"running": 1, "compensating": 3, "failed": 1}
    assert await store.count_by_status(since=T0) == {"running": 1, "compensating": 2, "failed": 1}


# --- find_created ---------------------------------------------------------------------------------------


def created_record(*, account_id: str, updated_at: datetime, due_date: date) -> SagaRecord:
    return new_record(account_id=account_id, status=SagaStatus.CREATED, updated_at=updated_at).model_copy(
        update={"due_date": due_date, "stripe_account": "acct_1", "invoice_id": "in_1"}
    )


@pytest.fixture
async def created(store: SagaStore) -> dict[str, SagaRecord]:
    """Named records in a shuffled insertion order; only ``created`` ones are found."""
    records = {
        "A_2m_due29": created_record(
            account_id="acc_A", updated_at=T0 + timedelta(minutes=2), due_date=date(2030, 1, 29)
        ),
        "failed_A_0m": new_record(status=SagaStatus.FAILED, reason=Reason.PRICE_NOT_FOUND, account_id="acc_A"),
        "B_1m_due20": created_record(
            account_id="acc_B", updated_at=T0 + timedelta(minutes=1), due_date=date(2030, 1, 20)
        ),
        "running_A_0m": new_record(status=SagaStatus.RUNNING, account_id="acc_A"),
        "A_0m_due15": created_record(account_id="acc_A", updated_at=T0, due_date=date(2030, 1, 15)),
        "A_3m_due16": created_record(
            account_id="acc_A", updated_at=T0 + timedelta(minutes=3), due_date=date(2030, 1, 16)
        ),
    }
    for record in records.values():
        await store.create_if_absent(record)
    return records


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, ["A_0m_due15", "B_1m_due20", "A_2m_due29", "A_3m_due16"], id="all-oldest-first"),
        pytest.param({"account_id": "acc_A"}, ["A_0m_due15", "A_2m_due29", "A_3m_due16"], id="account"),
        pytest.param({"account_id": "acc_nobody"}, [], id="no-match"),
        pytest.param({"since": T0 + timedelta(minutes=2)}, ["A_2m_due29", "A_3m_due16"], id="since-inclusive"),
        pytest.param(
            {"since": (T0 + timedelta(minutes=1)).astimezone(PLUS_5)},
            ["B_1m_due20", "A_2m_due29", "A_3m_due16"],
            id="since-in-another-timezone",
        ),
        pytest.param({"due_before": date(2030, 1, 20)}, ["A_0m_due15", "A_3m_due16"], id="due-before-exclusive"),
        pytest.param({"due_before": date(2030, 1, 15)}, [], id="due-on-the-day-is-not-before"),
        pytest.param(
            {"account_id": "acc_A", "since": T0 + timedelta(minutes=1), "due_before": date(2030, 1, 29)},
            ["A_3m_due16"],
            id="combined",
        ),
        pytest.param({"limit": 2}, ["A_0m_due15", "B_1m_due20"], id="limit-keeps-oldest"),
    ],
)
async def test_find_created_filters_and_orders(
    store: SagaStore, created: dict[str, SagaRecord], filters: dict[str, Any], expected: list[str]
) -> None:
    names = {record.payment_link_id: name for name, record in created.items()}

    found = await store.find_created(**filters)  # type: ignore[attr-defined]

    assert [names[record.payment_link_id] for record in found] == expected
    assert all(record == created[names[record.payment_link_id]] for record in found)


async def test_find_created_pages_on_with_the_last_updated_at(store: SagaStore, created: dict[str, SagaRecord]) -> None:
    tied = created_record(account_id="acc_B", updated_at=T0 + timedelta(minutes=1), due_date=date(2030, 1, 20))
    await store.create_if_absent(tied)
    seen: list[str] = []
    since: datetime | None = None

    for _ in range(10):
        # limit above the number of records sharing one updated_at (two here)
        page = await store.find_created(since=since, limit=3)  # type: ignore[attr-defined]
        fresh = [record.payment_link_id for record in page if record.payment_link_id not in seen]
        if not fresh:
            break
        seen += fresh
        since = page[-1].updated_at

    assert sorted(seen) == sorted(
        [*(r.payment_link_id for n, r in created.items() if n[0] in "AB"), tied.payment_link_id]
    )


async def test_find_created_sees_a_replayed_saga_once_it_is_created(
    store: SagaStore, created: dict[str, SagaRecord]
) -> None:
    failed = await store.load(created["failed_A_0m"].payment_link_id)
    assert failed is not None
    await store.save(
        failed.model_copy(
            update={
                "status": SagaStatus.CREATED,
                "failure": None,
                "due_date": date(2030, 1, 10),
                "updated_at": T0 + timedelta(minutes=9),
            }
        )
    )

    found = await store.find_created(due_before=date(2030, 1, 16))  # type: ignore[attr-defined]

    assert [record.payment_link_id for record in found] == [
        created["A_0m_due15"].payment_link_id,
        created["failed_A_0m"].payment_link_id,
    ]


async def test_counts_by_status_since_a_moment(store: SagaStore, created: dict[str, SagaRecord]) -> None:
    counts = store.count_by_status  # type: ignore[attr-defined]

    assert await counts() == {"created": 4, "failed": 1, "running": 1}
    assert await counts(since=T0 + timedelta(minutes=1)) == {"created": 3}


async def test_failures_by_reason_count_ended_failures_only_since_a_moment(
    store: SagaStore, replayable: dict[str, SagaRecord]
) -> None:
    failures = store.failures_by_reason  # type: ignore[attr-defined]

    assert await failures(T0) == [("price_not_found", False, 1), ("stripe_unavailable", True, 4)]
    assert await failures(T0 + timedelta(minutes=2)) == [("price_not_found", False, 1), ("stripe_unavailable", True, 3)]
    assert await failures(T0 + timedelta(minutes=5)) == []
