"""The step table (``domain.saga_steps.STEPS``): one row per step drives forward, resume and compensation."""

from __future__ import annotations

from typing import Any

from domain.events import Step
from domain.saga_record import SagaRecord
from domain.saga_steps import STEPS, SagaRun, first_unfinished_step
from tests.fakes.world import REQUEST_ID, World, make_request

BOOKKEEPING = {"version", "updated_at", "history"}
# Recorded unsaved: the customer rides with the draft's save, the rest with the result (ADRs 0016, 0018).
ADVANCED = {Step.CUSTOMER, Step.ITEMS, Step.FINALISE, Step.SHORTEN}


async def new_run(world: World) -> SagaRun:
    record = await world.store.create_if_absent(SagaRecord.start(make_request(), world.clock.now()))
    return SagaRun(world.saga()._ports, record)


def changed_fields(before: SagaRecord, after: SagaRecord) -> set[str]:
    return {name for name in SagaRecord.model_fields if getattr(before, name) != getattr(after, name)}


def test_the_table_has_every_step_once_in_the_order_of_the_contract() -> None:
    assert [step.name for step in STEPS] == list(Step)
    assert [step.name for step in STEPS if step.undo is not None] == [Step.DRAFT]


async def test_each_done_predicate_flips_exactly_after_its_own_do_and_only_its_fields_change() -> None:
    world = World()  # two line items, one per call: the items step needs two do's
    run = await new_run(world)
    produced = SagaRecord.step_fields()
    for index, step in enumerate(STEPS):
        assert [s.done(run.record) for s in STEPS] == [True] * index + [False] * (len(STEPS) - index)
        assert first_unfinished_step(run.record) is step.name
        dos, own = 0, {name for name, producer in produced.items() if producer is step.name}
        while not step.done(run.record):
            before = run.record
            await step.do(run)
            dos += 1
            saved = run.record == world.store.record(REQUEST_ID)
            assert saved is (step.name not in ADVANCED), "only validate's and draft's do save their outcome"
            assert changed_fields(before, run.record) - BOOKKEEPING <= own
            assert run.record.updated_at == world.clock.now()
        assert dos == (2 if step.name is Step.ITEMS else 1)
        assert all(s.done(run.record) for s in STEPS[: index + 1])
    assert first_unfinished_step(run.record) is Step.SHORTEN  # all done: the last step


async def test_every_step_writes_a_field_of_its_own() -> None:
    assert set(SagaRecord.step_fields().values()) == set(Step)


async def test_forward_skips_the_done_steps() -> None:
    world = World()
    run = await new_run(world)
    await run.forward()
    calls, saves = list(world.billing.calls), world.store.saves

    again = SagaRun(world.saga()._ports, run.record)  # stored, plus finalise and shorten advanced
    await again.forward()

    assert (world.billing.calls, world.store.saves) == (calls, saves)
    assert again.current_step is Step.SHORTEN


async def test_forward_resumes_at_the_first_unfinished_step() -> None:
    world = World()
    run = await new_run(world)
    for step in STEPS[:3]:  # validate, customer, draft
        await step.do(run)
    done_before = len(world.billing.calls)

    resumed = SagaRun(world.saga()._ports, world.store.record(REQUEST_ID))
    assert resumed.current_step is Step.ITEMS
    await resumed.forward()

    calls = set(world.billing.calls[done_before:])
    assert "add_invoice_items" in calls and "finalize_invoice" in calls
    assert not calls & {"search_customers", "create_customer", "create_draft_invoice"}
    assert world.billing.created == {"customer": 1, "invoice": 1, "invoice_item": 2}


async def test_compensation_undoes_the_done_steps_with_an_undo() -> None:
    world = World()
    run = await new_run(world)
    for step in STEPS[:2]:  # no invoice yet: nothing to undo
        await step.do(run)
    calls = list(world.billing.calls)
    assert await run.compensate() is False and world.billing.calls == calls

    await STEPS[2].do(run)  # the draft
    assert await run.compensate() is True
    assert world.billing.calls[-2:] == ["invoice_status", "delete_draft"]
    assert world.billing.unfinished_invoices() == []


async def test_compensation_of_a_finalised_invoice_voids_it() -> None:
    world = World()
    run = await new_run(world)
    for step in STEPS[:5]:
        while not step.done(run.record):
            await step.do(run)

    assert await run.compensate() is True

    assert world.billing.calls[-2:] == ["invoice_status", "void_invoice"]
    assert world.billing.unfinished_invoices() == []


def test_started_over_resets_exactly_the_fields_the_steps_produce() -> None:
    fresh = SagaRecord.start(make_request(), World().clock.now())
    produced: dict[str, Any] = {name: getattr(fresh, name) for name in SagaRecord.step_fields()}
    assert set(produced) == {
        "due_date", "stripe_account", "description", "customer_id", "invoice_id", "items_added", "invoice",
        "shortened", "short_url",
    }  # fmt: skip
    assert produced == {name: SagaRecord.model_fields[name].get_default() for name in produced}
