"""The failure matrix: every step x every failure kind → the right result, compensation and leftovers.

"Nothing left behind" means no draft or open invoice in the fake Stripe (customers are kept by design).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import PermanentError, Reason, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed, Step
from domain.saga_record import SagaRecord, SagaStatus
from domain.saga_steps import SagaRun
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, World, make_request, run_like_worker

CLEAN_RUN = {"customer": 1, "invoice": 1, "invoice_item": 2}


async def failed(world: World, **overrides: object) -> PaymentLinkFailed:
    result = await world.saga().run(make_request(**overrides))
    assert isinstance(result, PaymentLinkFailed), result
    assert world.outbox.ordered == [result]
    assert world.store.record(REQUEST_ID).result == result
    return result


def assert_nothing_left_behind(world: World) -> None:
    assert world.billing.unfinished_invoices() == []


# --- validate and customer: no invoice exists yet -------------------------------------------------


async def test_due_date_in_the_past_fails_before_any_lookup() -> None:
    world = World()
    result = await failed(world, days_until_due=None, due_date="2030-01-10")
    assert (result.reason, result.failed_step, result.compensated) == ("invalid_due_date", "validate", False)
    assert world.billing.calls == [] and world.crm.calls == []


@pytest.mark.parametrize("stripe_account", [None, ""])
async def test_account_without_stripe_is_not_connected(stripe_account: str | None) -> None:
    world = World()
    world.crm.add_account(ACCOUNT, stripe_account)
    result = await failed(world)
    assert (result.reason, result.failed_step, result.retryable) == ("account_not_connected", "customer", False)
    assert world.billing.calls == []


async def test_unknown_account_is_not_connected() -> None:
    world = World()
    result = await failed(world, account_id="acc_unknown")
    assert result.reason == "account_not_connected" and world.billing.calls == []


@pytest.mark.parametrize("contact_account", [None, "acc_other"])
async def test_missing_or_foreign_contact_is_not_found(contact_account: str | None) -> None:
    world = World()
    if contact_account is None:
        del world.crm.contacts[CONTACT]
    else:
        world.crm.contacts[CONTACT]["account_id"] = contact_account
    result = await failed(world)
    assert (result.reason, result.failed_step) == ("contact_not_found", "customer")
    assert result.account_id == ACCOUNT and result.contact_id == CONTACT and result.correlation_id == "corr-1"
    assert world.billing.calls == []


async def test_contact_vanishing_before_the_link_is_not_found() -> None:
    world = World()
    world.crm.faults.add("link_customer", PermanentError(Reason.CONTACT_NOT_FOUND, "contact vanished"))
    result = await failed(world)
    assert (result.reason, result.failed_step, result.compensated) == ("contact_not_found", "customer", False)


PERMANENT_STRIPE_FAILURES = [
    # (call, reason, failed step, compensated)
    ("search_customers", Reason.STRIPE_PERMISSION_DENIED, Step.CUSTOMER, False),
    ("create_customer", Reason.STRIPE_INVALID_REQUEST, Step.CUSTOMER, False),
    ("create_draft_invoice", Reason.STRIPE_INVALID_REQUEST, Step.DRAFT, False),
    ("create_draft_invoice", Reason.STRIPE_PERMISSION_DENIED, Step.DRAFT, False),
    ("add_invoice_items", Reason.STRIPE_PERMISSION_DENIED, Step.ITEMS, True),
    ("add_invoice_item", Reason.PRICE_NOT_FOUND, Step.ITEMS, True),
    ("finalize_invoice", Reason.STRIPE_INVALID_REQUEST, Step.FINALISE, True),
]


@pytest.mark.parametrize(("call", "reason", "step", "compensated"), PERMANENT_STRIPE_FAILURES)
async def test_permanent_stripe_failure_at_each_step(call: str, reason: Reason, step: Step, compensated: bool) -> None:
    world = World()
    world.billing.faults.add(call, PermanentError(reason, f"{call} refused"))
    result = await failed(world)
    assert (result.reason, result.failed_step, result.compensated) == (reason, step, compensated)
    assert (result.retryable, result.attempt) == (False, 1)
    assert f"{call} refused" in result.message
    assert world.store.record(REQUEST_ID).status is SagaStatus.FAILED
    assert_nothing_left_behind(world)


async def test_unknown_price_deletes_the_draft_with_the_items_already_added() -> None:
    world = World()
    result = await failed(world, line_items=[{"description": "ok", "amount": 10}, {"price_id": "price_nope"}])
    assert (result.reason, result.failed_step, result.compensated) == ("price_not_found", "items", True)
    assert world.billing.created["invoice_item"] == 1 and world.billing.invoices == {}
    assert "delete_draft" in world.billing.calls


async def test_price_in_another_currency_is_an_invalid_request() -> None:
    world = World()
    result = await failed(world, line_items=[{"price_id": "price_eur"}])
    assert (result.reason, result.failed_step, result.compensated) == ("stripe_invalid_request", "items", True)
    assert_nothing_left_behind(world)


async def test_invoice_finalised_before_the_error_is_voided() -> None:
    world = World()
    world.billing.faults.add(
        "finalize_invoice", PermanentError(Reason.STRIPE_INVALID_REQUEST, "late"), after_effect=True
    )
    result = await failed(world)
    assert (result.failed_step, result.compensated) == ("finalise", True)
    record = world.store.record(REQUEST_ID)
    assert record.invoice_id is not None and world.billing.invoices[record.invoice_id].status == "void"
    assert_nothing_left_behind(world)


async def test_finalised_invoice_without_hosted_url_is_voided() -> None:
    world = World()
    original = world.billing.finalize_invoice

    async def without_url(stripe_account: str, invoice_id: str, idempotency_key: str):  # type: ignore[no-untyped-def]
        invoice = await original(stripe_account, invoice_id, idempotency_key)
        return invoice.model_copy(update={"hosted_invoice_url": None})

    world.billing.finalize_invoice = without_url  # type: ignore[method-assign]
    result = await failed(world)
    assert (result.reason, result.failed_step, result.compensated) == ("stripe_invalid_request", "finalise", True)
    assert_nothing_left_behind(world)


async def test_due_date_passed_while_the_saga_waited_is_rejected_by_stripe() -> None:
    world = World()
    world.crm.faults.add("stripe_account_of", RetryableError(Reason.INTERNAL_ERROR, "mongo down"))
    with pytest.raises(RetryableError):
        await world.saga().run(make_request(days_until_due=1))
    world.clock.advance(timedelta(days=3))
    result = await failed(world, days_until_due=1)
    assert (result.reason, result.failed_step) == ("invalid_due_date", "draft")
    assert world.billing.created["invoice"] == 0


# --- transient faults: retried to success, or given up on with the state kept ------------------

TRANSIENT_CALLS = [
    ("crm", "stripe_account_of", Step.CUSTOMER),
    ("crm", "find_contact", Step.CUSTOMER),
    ("billing", "search_customers", Step.CUSTOMER),
    ("billing", "create_customer", Step.CUSTOMER),
    ("crm", "link_customer", Step.CUSTOMER),
    ("billing", "create_draft_invoice", Step.DRAFT),
    ("billing", "add_invoice_items", Step.ITEMS),
    ("billing", "add_invoice_item", Step.ITEMS),
    ("billing", "finalize_invoice", Step.FINALISE),
]


def break_transiently(world: World, port: str, call: str, times: int | None, after_effect: bool = False) -> None:
    fake = world.crm if port == "crm" else world.billing
    fake.faults.add(
        call, RetryableError(Reason.STRIPE_UNAVAILABLE, f"{call}: 503"), times=times, after_effect=after_effect
    )


@pytest.mark.parametrize("after_effect", [False, True], ids=["before", "response-lost"])
@pytest.mark.parametrize(("port", "call", "step"), TRANSIENT_CALLS)
async def test_transient_fault_once_is_retried_without_duplicates(
    port: str, call: str, step: Step, after_effect: bool
) -> None:
    world = World()
    break_transiently(world, port, call, times=1, after_effect=after_effect)
    result = await run_like_worker(world.saga(), make_request())
    assert isinstance(result, PaymentLinkCreated)
    assert world.billing.created == CLEAN_RUN
    assert world.outbox.ordered == [result]


@pytest.mark.parametrize(("port", "call", "step"), TRANSIENT_CALLS)
async def test_transient_fault_forever_gives_up_retryably_then_replay_completes(
    port: str, call: str, step: Step
) -> None:
    world = World()
    break_transiently(world, port, call, times=None)
    result = await run_like_worker(world.saga(), make_request(), attempts=3)
    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.retryable, result.compensated, result.failed_step) == (
        "stripe_unavailable",
        True,
        False,
        step,
    )
    assert "gave up after 3 attempt(s)" in result.message and "paylink replay" in result.message
    record = world.store.record(REQUEST_ID)
    assert record.status is SagaStatus.FAILED
    # Kept, not compensated: a draft made before the fault is still there for the replay to finish.
    assert [invoice.id for invoice in world.billing.unfinished_invoices()] == (
        [record.invoice_id] if record.invoice_id else []
    )

    world.crm.faults.clear()
    world.billing.faults.clear()
    replayed = await world.saga().replay(REQUEST_ID)
    assert isinstance(replayed, PaymentLinkCreated)
    assert world.billing.created == CLEAN_RUN
    assert world.outbox.ordered == [result, replayed]
    assert world.store.record(REQUEST_ID).attempt == 2


async def test_store_unavailable_gives_up_as_internal_error() -> None:
    world = World()
    world.store.faults.add("save", RetryableError(Reason.INTERNAL_ERROR, "not primary"), times=3)
    result = await run_like_worker(world.saga(), make_request(), attempts=3)
    assert isinstance(result, PaymentLinkFailed)
    # The first save is the draft step's: the due date went in with the saga's insert (ADR 0016), the
    # customer rides with the draft (ADR 0018).
    assert (result.reason, result.retryable, result.failed_step) == ("internal_error", True, "draft")


async def test_unexpected_exception_gives_up_as_internal_error() -> None:
    world = World()
    result = await world.saga().give_up(make_request(), KeyError("bug"), attempts=1)
    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.retryable) == ("internal_error", True) and "KeyError" in result.message


async def test_shortener_fault_never_fails_the_saga() -> None:
    world = World()
    world.shortener.mode = "raise"
    result = await run_like_worker(world.saga(), make_request())
    assert isinstance(result, PaymentLinkCreated) and result.url == result.hosted_invoice_url


async def test_outbox_fault_after_the_result_is_stored_re_appends_the_same_event() -> None:
    world = World()
    world.outbox.faults.add("append", RetryableError(Reason.INTERNAL_ERROR, "outbox down"))
    with pytest.raises(RetryableError):
        await world.saga().run(make_request())
    result = await world.saga().run(make_request())
    assert world.outbox.ordered == [result] == [world.store.record(REQUEST_ID).result]
    assert world.billing.created == CLEAN_RUN


# --- compensation failures --------------------------------------------------------------------


def fail_at_items_and_break(world: World, call: str, error: Exception, times: int | None = 1) -> None:
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    world.billing.faults.add(call, error, times=times)


@pytest.mark.parametrize("call", ["invoice_status", "delete_draft"])
async def test_compensation_failing_permanently_is_recorded_and_reported(call: str) -> None:
    world = World()
    fail_at_items_and_break(world, call, PermanentError(Reason.STRIPE_PERMISSION_DENIED, "no access"))
    result = await failed(world)
    record = world.store.record(REQUEST_ID)
    assert record.status is SagaStatus.COMPENSATION_FAILED
    assert record.failure is not None and record.failure.compensation_error == "no access"
    assert (result.reason, result.compensated, result.retryable) == ("price_not_found", False, False)
    assert f"invoice {record.invoice_id}" in result.message and "manual cleanup" in result.message
    assert [invoice.id for invoice in world.billing.unfinished_invoices()] == [record.invoice_id]

    # prepare_replay retries the compensation, which now succeeds.
    replayed = await world.saga().replay(REQUEST_ID)
    assert isinstance(replayed, PaymentLinkFailed)
    assert (replayed.reason, replayed.compensated, replayed.attempt) == ("price_not_found", True, 2)
    assert "compensation failed" not in replayed.message
    assert world.store.record(REQUEST_ID).status is SagaStatus.FAILED
    assert_nothing_left_behind(world)


@pytest.mark.parametrize("after_effect", [False, True], ids=["before", "response-lost"])
async def test_compensation_interrupted_transiently_resumes_on_the_next_run(after_effect: bool) -> None:
    world = World()
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    world.billing.faults.add("delete_draft", RetryableError(), after_effect=after_effect)
    with pytest.raises(RetryableError):
        await world.saga().run(make_request())
    record = world.store.record(REQUEST_ID)
    assert record.status is SagaStatus.COMPENSATING and record.failure is not None  # the debt is recorded
    assert world.outbox.ordered == []
    result = await world.saga().run(make_request())
    assert isinstance(result, PaymentLinkFailed) and (result.reason, result.compensated) == ("price_not_found", True)
    assert world.billing.calls.count("add_invoice_items") == 1  # the forward steps are not run again
    assert_nothing_left_behind(world)


async def test_compensation_given_up_on_ends_compensation_failed() -> None:
    world = World()
    fail_at_items_and_break(world, "delete_draft", RetryableError(), times=None)
    result = await run_like_worker(world.saga(), make_request(), attempts=2)
    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.compensated) == ("price_not_found", False)
    assert "gave up after 2 attempt(s)" in result.message
    assert world.store.record(REQUEST_ID).status is SagaStatus.COMPENSATION_FAILED
    world.billing.faults.clear()
    replayed = await world.saga().replay(REQUEST_ID)
    assert isinstance(replayed, PaymentLinkFailed) and replayed.compensated
    assert_nothing_left_behind(world)


async def test_a_paid_invoice_cannot_be_compensated() -> None:
    world = World()
    world.billing.faults.add(
        "finalize_invoice", PermanentError(Reason.STRIPE_INVALID_REQUEST, "late"), after_effect=True
    )
    original = world.billing.invoice_status

    async def paid(stripe_account: str, invoice_id: str) -> str | None:
        await original(stripe_account, invoice_id)
        return "paid"

    world.billing.invoice_status = paid  # type: ignore[method-assign,assignment]
    result = await failed(world)
    assert result.compensated is False and "already paid" in result.message
    assert world.store.record(REQUEST_ID).status is SagaStatus.COMPENSATION_FAILED


async def test_already_deleted_draft_counts_as_compensated() -> None:
    world = World()
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    original = world.billing.invoice_status

    async def gone(stripe_account: str, invoice_id: str) -> str | None:
        world.billing.invoices.pop(invoice_id)
        return await original(stripe_account, invoice_id)

    world.billing.invoice_status = gone  # type: ignore[method-assign,assignment]
    result = await failed(world)
    assert result.compensated is True and "delete_draft" not in world.billing.calls
    assert_nothing_left_behind(world)


async def test_nothing_to_compensate_without_an_invoice() -> None:
    world = World()
    record = await world.store.create_if_absent(SagaRecord.start(make_request(), world.clock.now()))
    assert await SagaRun(world.saga()._ports, record).compensate() is False
    assert world.billing.calls == []
