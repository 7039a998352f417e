"""The saga reports each forward step it completes, by its step name (never a Stripe endpoint), so that
``paylink_saga_step_seconds{step}`` measures steps; steps already done when a saga resumes are not
reported again."""

from __future__ import annotations

import pytest

from domain.errors import RetryableError
from domain.events import PaymentLinkCreated, Step
from domain.saga import PaymentLinkSaga
from tests.fakes.world import World, make_request


def observed_saga(world: World, seen: list[tuple[Step, float]]) -> PaymentLinkSaga:
    return PaymentLinkSaga(
        crm=world.crm,
        billing=world.billing,
        shortener=world.shortener,
        store=world.store,
        outbox=world.outbox,
        clock=world.clock,
        ids=world.ids,
        items_per_call=world.items_per_call,
        on_step=lambda step, seconds: seen.append((step, seconds)),
    )


async def test_every_step_of_a_created_link_is_reported_once_in_order() -> None:
    world, seen = World(), list[tuple[Step, float]]()
    request = make_request()
    assert isinstance(await observed_saga(world, seen).run(request), PaymentLinkCreated)
    # validate's outcome (the due date) goes in with the saga's insert (ADR 0016): no step runs for it.
    assert [step for step, _ in seen] == [step for step in Step if step is not Step.VALIDATE]
    assert all(seconds >= 0 for _, seconds in seen)
    await observed_saga(world, seen).run(request)  # a duplicate: the saga has ended, no step runs
    assert len(seen) == len(Step) - 1


async def test_a_resumed_saga_reports_only_the_steps_it_ran() -> None:
    world, seen = World(), list[tuple[Step, float]]()
    request = make_request()
    world.billing.faults.add("finalize_invoice", RetryableError(), times=1)
    with pytest.raises(RetryableError):
        await observed_saga(world, seen).run(request)
    assert [step for step, _ in seen] == [Step.CUSTOMER, Step.DRAFT, Step.ITEMS]
    seen.clear()
    assert isinstance(await observed_saga(world, seen).run(request), PaymentLinkCreated)
    # The items ride with the result: the resumed pass read the lines already on the draft (ADR 0018).
    assert [step for step, _ in seen] == [Step.ITEMS, Step.FINALISE, Step.SHORTEN]
