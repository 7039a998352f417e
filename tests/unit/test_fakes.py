"""The fakes behave like the real things where the saga's guarantees depend on it."""

from __future__ import annotations

import pytest

from adapters.system import RandomIds, SystemClock
from domain.billing import DraftInvoice, NewCustomer
from domain.errors import ConcurrentUpdateError, PermanentError, Reason
from domain.ports import Billing, Clock, CrmDirectory, IdGenerator, Outbox, SagaStore, Shortener
from domain.saga_record import SagaRecord
from tests.fakes.basics import FakeClock, FakeShortener, SequentialIds
from tests.fakes.billing import FakeBilling
from tests.fakes.crm import FakeCrm
from tests.fakes.stores import FakeOutbox, FakeSagaStore
from tests.fakes.world import make_request


def test_fakes_and_defaults_implement_the_ports() -> None:
    # Checked by mypy (the assignments) and at run time (the names exist).
    clock: Clock = FakeClock()
    ports: list[object] = [
        FakeBilling(clock),
        FakeCrm(),
        FakeShortener(),
        FakeSagaStore(),
        FakeOutbox(),
        SequentialIds(),
    ]
    billing: Billing = FakeBilling(clock)
    crm: CrmDirectory = FakeCrm()
    shortener: Shortener = FakeShortener()
    store: SagaStore = FakeSagaStore()
    outbox: Outbox = FakeOutbox()
    ids: IdGenerator = SequentialIds()
    assert all(ports) and billing and crm and shortener and store and outbox and ids
    system_clock: Clock = SystemClock()
    assert system_clock.now().utcoffset() is not None
    random_ids: IdGenerator = RandomIds()
    assert random_ids.new_id() != random_ids.new_id()


async def test_saga_store_enforces_versions_and_keeps_the_first_record() -> None:
    store = FakeSagaStore()
    record = SagaRecord.start(make_request(), FakeClock().now())
    stored = await store.create_if_absent(record)
    assert await store.create_if_absent(record.model_copy(update={"attempt": 9})) == stored
    saved = await store.save(stored.model_copy(update={"items_added": 1}))
    assert saved.version == stored.version + 1
    with pytest.raises(ConcurrentUpdateError) as stale:
        await store.save(stored)
    assert stale.value.retryable and stale.value.reason is Reason.INTERNAL_ERROR
    with pytest.raises(ConcurrentUpdateError):
        await store.save(record.model_copy(update={"payment_link_id": "unknown"}))
    assert await store.load("unknown") is None


async def test_billing_rejects_a_reused_key_with_other_parameters_and_counts_creations() -> None:
    billing = FakeBilling(FakeClock())
    first = await billing.create_customer("acct_1", NewCustomer("A", None, None, None), "key-1")
    assert await billing.create_customer("acct_1", NewCustomer("A", None, None, None), "key-1") == first
    assert billing.created["customer"] == 1
    with pytest.raises(PermanentError) as caught:
        await billing.create_customer("acct_1", NewCustomer("B", None, None, None), "key-1")
    assert caught.value.reason is Reason.STRIPE_INVALID_REQUEST


async def test_billing_rejects_past_due_dates_and_unknown_customers() -> None:
    billing = FakeBilling(FakeClock())
    customer = billing.add_customer("acct_1", name="A")
    past = DraftInvoice(customer, "usd", 0, "d", {})
    with pytest.raises(PermanentError) as caught:
        await billing.create_draft_invoice("acct_1", past, "k1")
    assert caught.value.reason is Reason.INVALID_DUE_DATE
    with pytest.raises(PermanentError):
        await billing.create_draft_invoice("acct_2", DraftInvoice(customer, "usd", 2**40, "d", {}), "k2")


async def test_faults_fire_the_requested_number_of_times() -> None:
    crm = FakeCrm()
    crm.add_account("a", "acct_1")
    crm.faults.add("stripe_account_of", PermanentError(Reason.INTERNAL_ERROR, "x"), times=2)
    for _ in range(2):
        with pytest.raises(PermanentError):
            await crm.stripe_account_of("a")
    assert await crm.stripe_account_of("a") == "acct_1"
