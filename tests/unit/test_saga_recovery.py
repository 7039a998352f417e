"""Rare recovery paths of the saga, through its public API and the documents it saves.

Starting over after a permanent failure, undoing an uncollectible invoice, resuming after the shortener
was asked, giving up, replay refusals and answers to unparseable input.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from domain.errors import PermanentError, Reason, ReplayRefusedError, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.intake import parse_request
from domain.saga_record import SagaRecord
from tests.fakes.faults import SimulatedCrash
from tests.fakes.world import (
    ACCOUNT,
    REQUEST_ID,
    STRIPE_ACCOUNT,
    World,
    make_request,
    request_document,
    run_like_worker,
)

LATER_PRICE_LINES = [{"price_id": "price_basic", "quantity": 2}, {"price_id": "price_later"}]


def saved(world: World) -> dict[str, Any]:
    return world.store.documents[REQUEST_ID]


async def test_a_restart_after_a_permanent_failure_puts_every_line_on_a_new_draft_due_from_the_new_day() -> None:
    world = World()
    failed = await world.saga().run(make_request(line_items=LATER_PRICE_LINES))
    assert isinstance(failed, PaymentLinkFailed) and (failed.reason, failed.compensated) == ("price_not_found", True)
    assert world.billing.invoices == {}  # the first draft (with line 0 on it) was deleted
    world.billing.add_price(STRIPE_ACCOUNT, "price_later", 700, "usd")
    world.clock.advance(timedelta(days=3))

    created = await world.saga().replay(REQUEST_ID)

    assert isinstance(created, PaymentLinkCreated)
    assert created.due_date == world.clock.now().date() + timedelta(days=14)
    assert created.amount_due == 2 * 1500 + 700
    assert created.short_url is not None and created.url == created.short_url  # the new invoice is shortened
    invoice = world.billing.invoices[created.invoice_id]
    assert [item["metadata"]["line_index"] for item in invoice.items] == ["0", "1"]
    assert ("create_draft_invoice", f"paylink-{REQUEST_ID}-r1-draft") in world.billing.keys_used
    assert (saved(world)["restarts"], saved(world)["items_added"], saved(world)["attempt"]) == (1, 2, 2)


async def test_a_restart_that_fails_early_keeps_nothing_of_the_old_run() -> None:
    world = World()
    await world.saga().run(make_request(line_items=LATER_PRICE_LINES))
    assert saved(world)["stripe_account"] == STRIPE_ACCOUNT and saved(world)["description"]
    world.crm.add_account(ACCOUNT, None)  # disconnected meanwhile

    again = await world.saga().replay(REQUEST_ID)

    assert isinstance(again, PaymentLinkFailed) and again.reason == "account_not_connected"
    old_run = ("stripe_account", "description", "customer_id", "invoice_id", "invoice", "short_url")
    assert {name: saved(world)[name] for name in old_run} == dict.fromkeys(old_run)
    assert (saved(world)["items_added"], saved(world)["shortened"]) == (0, False)


async def test_undoing_an_uncollectible_invoice_voids_it() -> None:
    world = World()
    # Finalised on Stripe, but the answer is an error: the saga compensates a finalised invoice.
    world.billing.faults.add(
        "finalize_invoice", PermanentError(Reason.STRIPE_INVALID_REQUEST, "refused late"), after_effect=True
    )
    world.billing.faults.add("void_invoice", PermanentError(Reason.STRIPE_INVALID_REQUEST, "void refused"))
    stuck = await world.saga().run(make_request())
    [invoice] = world.billing.invoices.values()
    assert isinstance(stuck, PaymentLinkFailed) and not stuck.compensated
    assert stuck.message == (
        f"refused late; compensation failed, invoice {invoice.id} on {STRIPE_ACCOUNT} needs manual cleanup: "
        "void refused"
    )
    invoice.status = "uncollectible"  # marked so on the dashboard meanwhile

    undone = await world.saga().replay(REQUEST_ID)

    assert isinstance(undone, PaymentLinkFailed)
    assert (undone.reason, undone.failed_step, undone.compensated) == ("stripe_invalid_request", "finalise", True)
    assert str(invoice.status) == "void"  # str(): mypy narrowed it to the value set above
    assert world.billing.keys_used[-1] == ("void_invoice", f"paylink-{REQUEST_ID}-r0-void")


async def test_a_resumed_saga_does_not_ask_the_shortener_again() -> None:
    world = World()
    world.shortener.mode = "none"  # no short URL: only the saved flag tells that it was asked
    original_save = world.store.save
    crashed = False

    async def crash_after_the_shortener_answered(record: SagaRecord) -> SagaRecord:
        nonlocal crashed
        stored = await original_save(record)
        if world.shortener.calls and not crashed:
            crashed = True
            raise SimulatedCrash("crash after the shortener's answer was saved")
        return stored

    world.store.save = crash_after_the_shortener_answered  # type: ignore[method-assign]
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request())
    assert saved(world)["shortened"] is True and saved(world)["short_url"] is None

    result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkCreated)
    assert result.short_url is None and result.url == result.hosted_invoice_url
    assert len(world.shortener.calls) == 1


async def test_every_save_stamps_updated_at_with_the_clock() -> None:
    world = World()
    world.billing.faults.add("create_draft_invoice", RetryableError(), times=None)
    started = world.clock.now()
    world.clock.advance(timedelta(minutes=5))  # the record exists from here
    await run_like_worker(world.saga(), make_request())
    assert saved(world)["created_at"] == saved(world)["updated_at"] == "2030-01-15T09:35:00.000000Z"
    world.billing.faults.clear()
    world.clock.advance(timedelta(hours=1))

    await world.saga().replay(REQUEST_ID)

    assert saved(world)["created_at"] == "2030-01-15T09:35:00.000000Z"
    assert saved(world)["updated_at"] == "2030-01-15T10:35:00.000000Z"
    assert started < world.clock.now()


async def test_giving_up_says_where_and_why_and_how_to_resume() -> None:
    world = World()
    world.billing.faults.add(
        "create_draft_invoice", RetryableError(Reason.STRIPE_UNAVAILABLE, "stripe down"), times=None
    )

    result = await run_like_worker(world.saga(), make_request(), attempts=3)

    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.failed_step, result.retryable, result.compensated) == (
        "stripe_unavailable",
        "draft",
        True,
        False,
    )
    assert result.message == (
        "gave up after 3 attempt(s) at step draft: stripe down; progress is kept and `paylink replay` resumes it"
    )


async def test_giving_up_on_an_unexpected_error_quotes_it_bounded() -> None:
    world = World()
    error = RuntimeError("x" * 300)

    result = await world.saga().give_up(make_request(), error, attempts=2)

    assert isinstance(result, PaymentLinkFailed) and result.reason == "internal_error"
    cause = repr(error)[:199] + "…"
    assert result.message == (
        f"gave up after 2 attempt(s) at step validate: {cause}; progress is kept and `paylink replay` resumes it"
    )


async def test_replay_refusals_name_the_saga_and_why() -> None:
    world = World()
    with pytest.raises(ReplayRefusedError, match=r"^no saga nope$"):
        await world.saga().prepare_replay("nope")
    world.store.crash_at_save(1, persisted=True)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request())
    with pytest.raises(ReplayRefusedError) as running:
        await world.saga().prepare_replay(REQUEST_ID)
    assert str(running.value) == f"saga {REQUEST_ID} is running, saved too recently to be abandoned"
    await world.saga().run(make_request())
    with pytest.raises(ReplayRefusedError) as created:
        await world.saga().prepare_replay(REQUEST_ID)
    assert str(created.value) == f"saga {REQUEST_ID} is created, not failed"


UNPARSEABLE_RESULT_ID = "5f1492d4-cb57-5b9a-b8ad-32bc2960731d"  # uuid5(intake.UNPARSEABLE_NAMESPACE, REQUEST_ID)


async def test_unparseable_input_is_answered_with_a_deterministic_failure() -> None:
    world = World()
    document = request_document(event_id=REQUEST_ID.upper(), correlation_id="corr-9", account_id="a" * 200)
    document["contact_id"] = "c" * 201  # too long to be an identifier: left out
    raw = json.dumps(document).encode().replace(b'"D-42"', b'"D-\xff42"')  # a byte that is not UTF-8
    with pytest.raises(PermanentError) as raised:
        parse_request(raw)

    event = await world.saga().reject_unparseable(raw, raised.value)

    assert event is not None and world.outbox.ordered == [event]
    assert event.event_id == UNPARSEABLE_RESULT_ID
    assert (event.payment_link_id, event.correlation_id) == (REQUEST_ID, "corr-9")
    assert (event.account_id, event.contact_id) == ("a" * 200, None)
    assert (event.reason, event.message, event.failed_step) == ("invalid_event", raised.value.message, "validate")
    again = await world.saga().reject_unparseable(raw, raised.value)
    assert again == event and len(world.outbox.ordered) == 1
