"""``give_up``, ``prepare_replay``/``replay`` and ``reject_unparseable``."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from domain.errors import PermanentError, Reason, ReplayRefusedError, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.intake import parse_request
from domain.keys import InvoiceKeys
from domain.saga_record import SagaStatus
from tests.fakes.faults import SimulatedCrash
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, World, make_request, request_document, run_like_worker

STALE = timedelta(minutes=15)


async def test_replay_after_give_up_resumes_with_the_same_keys_and_due_date() -> None:
    world = World()
    world.billing.faults.add("finalize_invoice", RetryableError(), times=None)
    gave_up = await run_like_worker(world.saga(), make_request(), attempts=2)
    assert isinstance(gave_up, PaymentLinkFailed) and gave_up.failed_step == "finalise"
    before = world.store.record(REQUEST_ID)
    keys_before = list(world.billing.keys_used)

    world.billing.faults.clear()
    world.clock.advance(timedelta(days=2))
    request = await world.saga().prepare_replay(REQUEST_ID)
    reopened = world.store.record(REQUEST_ID)
    assert (reopened.status, reopened.attempt, reopened.failure, reopened.result) == (SagaStatus.RUNNING, 2, None, None)
    result = await world.saga().run(request)
    assert isinstance(result, PaymentLinkCreated)
    assert (gave_up.attempt, result.attempt) == (1, 2), "the replay's result outranks the failure it replaces"
    after = world.store.record(REQUEST_ID)
    assert (after.due_date, after.invoice_id, after.customer_id) == (
        before.due_date,
        before.invoice_id,
        before.customer_id,
    )
    assert world.billing.keys_used[len(keys_before) :] == [("finalize_invoice", InvoiceKeys(REQUEST_ID).finalise())]


async def test_replay_of_a_permanent_failure_starts_over_with_new_keys() -> None:
    world = World()
    first = await world.saga().run(make_request(line_items=[{"price_id": "price_later"}]))
    assert isinstance(first, PaymentLinkFailed) and first.compensated
    world.billing.add_price("acct_1", "price_later", 700, "usd")
    world.clock.advance(timedelta(days=1))

    result = await world.saga().replay(REQUEST_ID)
    assert isinstance(result, PaymentLinkCreated) and result.amount_due == 700
    record = world.store.record(REQUEST_ID)
    assert (record.attempt, record.restarts) == (2, 1)
    assert record.due_date is not None and result.due_date == record.due_date  # recomputed at the restart
    assert world.billing.created == {"customer": 1, "invoice": 2, "invoice_item": 1}  # the customer is reused
    assert world.outbox.ordered == [first, result]


async def test_replay_after_fixing_the_crm_succeeds() -> None:
    world = World()
    world.crm.add_account(ACCOUNT, None)
    first = await world.saga().run(make_request())
    assert isinstance(first, PaymentLinkFailed) and first.reason == "account_not_connected"
    world.crm.add_account(ACCOUNT, "acct_1")
    assert isinstance(await world.saga().replay(REQUEST_ID), PaymentLinkCreated)


@pytest.mark.parametrize("state", ["missing", "created", "running"])
async def test_replay_is_refused_unless_the_saga_failed(state: str) -> None:
    world = World()
    if state == "created":
        await world.saga().run(make_request())
    elif state == "running":
        world.billing.faults.add("create_draft_invoice", RetryableError())
        with pytest.raises(RetryableError):
            await world.saga().run(make_request())
    with pytest.raises(ReplayRefusedError):
        await world.saga().prepare_replay(REQUEST_ID)


async def killed_replay(world: World) -> None:
    """The stuck state as it happens: the worker gave up at the draft (Stripe down), then a replay
    re-opened the saga and its process died after adding the first line item."""
    world.billing.faults.add("create_draft_invoice", RetryableError(), times=None)
    gave_up = await run_like_worker(world.saga(), make_request(), attempts=2)
    assert isinstance(gave_up, PaymentLinkFailed) and gave_up.failed_step == "draft"
    world.billing.faults.clear()
    request = await world.saga().prepare_replay(REQUEST_ID)
    world.billing.faults.add("add_invoice_item", SimulatedCrash("killed"), after_effect=True)  # the first line
    with pytest.raises(SimulatedCrash):
        await world.saga().run(request)
    stuck = world.store.record(REQUEST_ID)
    # The draft is saved; the line on it is not (items ride with the result, ADR 0018).
    assert (stuck.status, stuck.attempt, stuck.items_added) == (SagaStatus.RUNNING, 2, 0)
    assert stuck.invoice_id is not None and len(world.billing.invoices[stuck.invoice_id].items) == 1


async def test_a_stale_running_saga_resumes_at_its_first_unfinished_step_with_the_same_keys() -> None:
    world = World()
    await killed_replay(world)
    stuck, keys_before = world.store.record(REQUEST_ID), len(world.billing.keys_used)
    world.clock.advance(STALE + timedelta(seconds=1))

    request = await world.saga().prepare_replay(REQUEST_ID, running_stale_before=world.clock.now() - STALE)
    reopened = world.store.record(REQUEST_ID)
    assert (reopened.status, reopened.attempt, reopened.restarts) == (SagaStatus.RUNNING, 3, 0)
    result = await world.saga().run(request)

    assert isinstance(result, PaymentLinkCreated) and result.invoice_id == stuck.invoice_id
    assert result.attempt == 3
    assert result.due_date == stuck.due_date and result.amount_due == 2 * 1500 + 5000
    keys = InvoiceKeys(REQUEST_ID)
    assert world.billing.keys_used[keys_before:] == [
        ("add_invoice_item", keys.item(1)),
        ("finalize_invoice", keys.finalise()),
    ]
    assert dict(world.billing.created) == {"customer": 1, "invoice": 1, "invoice_item": 2}  # nothing twice
    assert world.outbox.ordered[-1] == result and world.store.record(REQUEST_ID).status is SagaStatus.CREATED


@pytest.mark.parametrize("cutoff", ["none", "before the last save", "at the last save"])
async def test_a_fresh_running_saga_is_still_refused(cutoff: str) -> None:
    world = World()
    await killed_replay(world)
    stuck = world.store.record(REQUEST_ID)
    world.clock.advance(STALE - timedelta(seconds=1))
    stale_before = {
        "none": None,
        "before the last save": world.clock.now() - STALE,
        "at the last save": stuck.updated_at,
    }[cutoff]
    with pytest.raises(ReplayRefusedError, match="running"):
        await world.saga().prepare_replay(REQUEST_ID, running_stale_before=stale_before)
    assert world.store.record(REQUEST_ID) == stuck


async def killed_compensation(world: World) -> None:
    """A permanent failure at the items recorded its debt (compensating), then the process died."""
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    world.store.crash_at_save(2, persisted=True)  # draft, compensating: killed (due date: insert; customer: draft)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request())
    stuck = world.store.record(REQUEST_ID)
    assert (stuck.status, stuck.attempt, stuck.result) == (SagaStatus.COMPENSATING, 1, None)


async def test_a_stale_compensating_saga_is_replayed_like_a_stale_running_one() -> None:
    world = World()
    await killed_compensation(world)
    world.clock.advance(STALE + timedelta(seconds=1))

    request = await world.saga().prepare_replay(REQUEST_ID, running_stale_before=world.clock.now() - STALE)
    reopened = world.store.record(REQUEST_ID)
    assert (reopened.status, reopened.attempt, reopened.restarts) == (SagaStatus.COMPENSATING, 2, 0)
    result = await world.saga().run(request)

    assert isinstance(result, PaymentLinkFailed) and (result.reason, result.compensated, result.attempt) == (
        "price_not_found",
        True,
        2,
    )
    assert world.billing.unfinished_invoices() == [] and world.billing.created["invoice"] == 1
    assert world.store.record(REQUEST_ID).status is SagaStatus.FAILED


@pytest.mark.parametrize("cutoff", ["none", "at the last save"])
async def test_a_fresh_compensating_saga_is_refused(cutoff: str) -> None:
    world = World()
    await killed_compensation(world)
    stuck = world.store.record(REQUEST_ID)
    stale_before = None if cutoff == "none" else stuck.updated_at
    with pytest.raises(ReplayRefusedError, match="compensating"):
        await world.saga().prepare_replay(REQUEST_ID, running_stale_before=stale_before)
    assert world.store.record(REQUEST_ID) == stuck
    assert await world.store.find_replayable() == []  # never selected by the filters


async def test_find_replayable_filters_failed_sagas() -> None:
    world = World()
    await world.saga().run(make_request(contact_id="nobody"))
    assert [record.payment_link_id for record in await world.store.find_replayable(reason="contact_not_found")] == [
        REQUEST_ID
    ]
    assert await world.store.find_replayable(reason="price_not_found") == []
    assert await world.store.find_replayable(account_id="other") == []


async def test_give_up_before_the_saga_was_ever_stored() -> None:
    world = World()
    result = await world.saga().give_up(make_request(), RetryableError(Reason.INTERNAL_ERROR, "mongo"), attempts=4)
    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.failed_step, result.retryable, result.attempt) == (
        "internal_error",
        "validate",
        True,
        1,
    )
    assert world.outbox.ordered == [result]


async def test_reject_unparseable_reports_once_per_event_id() -> None:
    world = World()
    raw = json.dumps({**request_document(), "line_items": [{"price_id": "p", "amount": 1}]}).encode()
    with pytest.raises(PermanentError) as caught:
        parse_request(raw)
    first = await world.saga().reject_unparseable(raw, caught.value)
    again = await world.saga().reject_unparseable(raw, caught.value)
    assert first is not None and again is not None and first.event_id == again.event_id
    assert (first.reason, first.account_id, first.contact_id) == ("invalid_line_items", ACCOUNT, CONTACT)
    assert world.outbox.ordered == [first]
    assert await world.saga().reject_unparseable(b"\x00", caught.value) is None
    assert world.store.documents == {}
