"""Crash and resume at every step boundary; duplicates of finished requests change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from domain.errors import ConcurrentUpdateError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.saga_record import SagaStatus
from tests.fakes.faults import SimulatedCrash
from tests.fakes.world import CONTACT, REQUEST_ID, World, make_request

VOLATILE = {"event_id", "occurred_at"}
LINES = [
    {"price_id": "price_basic", "quantity": 2},
    {"description": "a", "amount": 10},
    {"description": "b", "amount": 20},
]
FAILING_LINES: list[dict[str, Any]] = [*LINES[:2], {"price_id": "price_missing"}]


def saves_of_a_clean_run(lines: list[dict[str, Any]], items_per_call: int = 1) -> int:
    world = World(items_per_call=items_per_call)
    asyncio.run(world.saga().run(make_request(line_items=lines)))
    return world.store.saves


async def reference(items_per_call: int = 1) -> tuple[dict[str, Any], dict[str, int]]:
    world = World(items_per_call=items_per_call)
    result = await world.saga().run(make_request(line_items=LINES))
    return result.model_dump(exclude=VOLATILE), dict(world.billing.created)


async def resume_matches_a_clean_run(world: World, *, expired: bool, items_per_call: int = 1) -> None:
    """Runs the saga until the crash ``world`` is rigged with, forgets Stripe's keys if ``expired``, runs it
    again (a restarted process, same stores): it must end as a clean run does, with no Stripe object twice."""
    expected_result, expected_created = await reference(items_per_call)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request(line_items=LINES))
    if expired:
        world.billing.expire_keys()
    result = await world.saga().run(make_request(line_items=LINES))
    assert isinstance(result, PaymentLinkCreated)
    assert result.model_dump(exclude=VOLATILE) == expected_result
    assert dict(world.billing.created) == expected_created  # no Stripe object created twice


# The due date goes in with the insert, the customer with the draft, the items, finalise and shorten with
# the result (ADRs 0016, 0018).
SAVES = saves_of_a_clean_run(LINES)  # draft, result
BULK_SAVES = saves_of_a_clean_run(LINES, items_per_call=2)
FAILING_SAVES = saves_of_a_clean_run(FAILING_LINES)  # draft, failure owed, result


def stripe_writes_of_a_clean_run(lines: list[dict[str, Any]], items_per_call: int = 1) -> list[tuple[str, int]]:
    """Every Stripe POST of a clean run, as (call, how many of that call came before it)."""
    world = World(items_per_call=items_per_call)
    asyncio.run(world.saga().run(make_request(line_items=lines)))
    calls = [call for call, _ in world.billing.keys_used]
    return [(call, calls[:index].count(call)) for index, call in enumerate(calls)]


STRIPE_WRITES = stripe_writes_of_a_clean_run(LINES)
BULK_STRIPE_WRITES = stripe_writes_of_a_clean_run(LINES, items_per_call=2)


def test_the_boundaries_are_the_ones_expected() -> None:
    assert (SAVES, BULK_SAVES, FAILING_SAVES) == (2, 2, 3)
    assert [call for call, _ in STRIPE_WRITES] == [
        "create_customer",
        "create_draft_invoice",
        *["add_invoice_item"] * 3,
        "finalize_invoice",
    ]
    assert [call for call, _ in BULK_STRIPE_WRITES] == [
        "create_customer",
        "create_draft_invoice",
        "add_lines",
        "add_invoice_item",
        "finalize_invoice",
    ]


@pytest.mark.parametrize("expired", [False, True], ids=["within-24h", "keys-expired"])
@pytest.mark.parametrize(
    ("items_per_call", "write"), [(1, w) for w in STRIPE_WRITES] + [(2, w) for w in BULK_STRIPE_WRITES]
)
async def test_a_crash_right_after_any_stripe_write_then_resume_duplicates_nothing(
    items_per_call: int, write: tuple[str, int], expired: bool
) -> None:
    """The windows no save covers (ADR 0018): the process dies as soon as Stripe acted, before anything was
    recorded. The resume asks Stripe what the dead pass did (the draft of the link, the lines on it) and
    creates nothing twice, even when Stripe has forgotten every key since."""
    world = World(items_per_call=items_per_call)
    call, earlier = write
    world.billing.faults.add(call, SimulatedCrash(f"crash after {call}"), after_effect=True, skip=earlier)
    await resume_matches_a_clean_run(world, expired=expired, items_per_call=items_per_call)


async def test_a_resumed_pass_adopts_the_draft_even_when_the_contact_was_renamed_meanwhile() -> None:
    """Without adoption the resumed draft call would send the same key with another description, which
    Stripe refuses: the saga would fail and leave the first draft behind."""
    world = World()
    world.billing.faults.add("create_draft_invoice", SimulatedCrash("crash"), after_effect=True)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request(line_items=LINES))
    world.crm.contacts[CONTACT]["name"] = "Someone Else"  # the description comes from the contact's name
    result = await world.saga().run(make_request(line_items=LINES))
    assert isinstance(result, PaymentLinkCreated)
    assert world.billing.created["invoice"] == 1
    assert [invoice.status for invoice in world.billing.invoices.values()] == ["open"]


@pytest.mark.parametrize("persisted", [True, False], ids=["after-write", "before-write"])
@pytest.mark.parametrize("crash_at", range(1, SAVES + 1))
async def test_crash_at_every_step_boundary_then_resume(crash_at: int, persisted: bool) -> None:
    expected_result, expected_created = await reference()
    world = World()
    world.store.crash_at_save(crash_at, persisted=persisted)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request(line_items=LINES))
    result = await world.saga().run(make_request(line_items=LINES))  # a restarted process, same stores
    assert isinstance(result, PaymentLinkCreated)
    assert result.model_dump(exclude=VOLATILE) == expected_result
    assert dict(world.billing.created) == expected_created  # no Stripe object created twice
    assert world.outbox.ordered == [result] == [world.store.record(REQUEST_ID).result]


@pytest.mark.parametrize("crash_at", range(1, BULK_SAVES + 1))
async def test_crash_with_bulk_item_batches_resumes_without_duplicates(crash_at: int) -> None:
    expected_result, expected_created = await reference(items_per_call=2)
    world = World(items_per_call=2)
    world.store.crash_at_save(crash_at, persisted=False)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request(line_items=LINES))
    result = await world.saga().run(make_request(line_items=LINES))
    assert result.model_dump(exclude=VOLATILE) == expected_result
    assert dict(world.billing.created) == expected_created


@pytest.mark.parametrize("persisted", [True, False], ids=["after-write", "before-write"])
@pytest.mark.parametrize("crash_at", range(1, FAILING_SAVES + 1))
async def test_crash_during_failure_and_compensation_then_resume(crash_at: int, persisted: bool) -> None:
    world = World()
    world.store.crash_at_save(crash_at, persisted=persisted)
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request(line_items=FAILING_LINES))
    result = await world.saga().run(make_request(line_items=FAILING_LINES))
    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.failed_step, result.compensated) == ("price_not_found", "items", True)
    assert world.billing.unfinished_invoices() == [] and world.billing.created["invoice"] == 1
    assert world.outbox.ordered == [result]


BOUNDARIES_SAFE_AFTER_EXPIRY = [(n, True) for n in range(1, SAVES + 1)] + [(SAVES, False)]


@pytest.mark.parametrize(("crash_at", "persisted"), BOUNDARIES_SAFE_AFTER_EXPIRY)
async def test_a_resume_after_the_idempotency_keys_expired_duplicates_nothing(crash_at: int, persisted: bool) -> None:
    """Stripe forgets keys after 24 h: resumed later, a saga must not rely on them for what it saved.

    Crashed right after any save, or before the final one (finalise and shorten done but unsaved), the
    resume repeats only steps safe without their keys. (A crash between a Stripe create and the next save
    is covered by the resumed pass's reads of Stripe, not by the keys: the test above, ADR 0018.)
    """
    world = World()
    world.store.crash_at_save(crash_at, persisted=persisted)
    await resume_matches_a_clean_run(world, expired=True)


async def test_duplicate_of_a_finished_request_changes_nothing() -> None:
    world = World()
    first = await world.saga().run(make_request())
    calls, version, appends = list(world.billing.calls), world.store.record(REQUEST_ID).version, world.outbox.appends
    again = await world.saga().run(make_request())
    assert again == first
    assert world.billing.calls == calls and world.crm.calls.count("find_contact") == 1
    assert world.store.record(REQUEST_ID).version == version
    assert world.outbox.ordered == [first] and world.outbox.appends == appends + 1  # same id: stored once


async def test_duplicate_of_a_failed_request_reports_the_same_failure() -> None:
    world = World()
    first = await world.saga().run(make_request(contact_id="nobody"))
    again = await world.saga().run(make_request(contact_id="nobody"))
    assert again == first and world.outbox.ordered == [first]


async def test_a_duplicate_with_another_body_is_answered_from_the_stored_request() -> None:
    world = World()
    first = await world.saga().run(make_request())
    again = await world.saga().run(make_request(currency="eur", line_items=[{"price_id": "price_eur"}]))
    assert again == first


async def test_give_up_on_a_finished_saga_reports_its_result() -> None:
    world = World()
    first = await world.saga().run(make_request())
    assert await world.saga().give_up(make_request(), RuntimeError("late"), attempts=5) == first
    assert world.store.record(REQUEST_ID).status is SagaStatus.CREATED


async def test_concurrent_writer_is_detected_and_the_retry_resumes() -> None:
    world = World()
    saga = world.saga()
    original_save = world.store.save
    raced = False

    async def racing_save(record):  # type: ignore[no-untyped-def]
        nonlocal raced
        if not raced and record.invoice_id is not None:
            raced = True
            stored = world.store.documents[REQUEST_ID]
            stored["version"] += 1  # another worker wrote in between
        return await original_save(record)

    world.store.save = racing_save  # type: ignore[method-assign]
    with pytest.raises(ConcurrentUpdateError):
        await saga.run(make_request())
    result = await saga.run(make_request())
    assert isinstance(result, PaymentLinkCreated)
    assert world.billing.created == {"customer": 1, "invoice": 1, "invoice_item": 2}
