"""``LinkCanceller`` (domain/cancel.py) on the fakes: crashes, lost replies, giving up and replays, and one
``PaymentLinkVoided`` whoever notices the void first (the cancel or the webhook)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from domain.cancel import void_key
from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected
from domain.cancel_record import CancelRecord, CancelStatus
from domain.errors import PermanentError, Reason, ReplayRefusedError, RetryableError
from domain.events import PaymentLinkFailed
from domain.lifecycle_events import PaymentLinkVoided, Source
from domain.lifecycle_service import Outcome
from tests.fakes.cancels import FakeCancelStore
from tests.fakes.faults import SimulatedCrash
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import World, make_request, new_request_id, run_like_worker
from tests.unit.cancel_link import Link, created_link, rejection


@pytest.fixture
async def link() -> Link:
    return await created_link()


# --- crashes, lost responses, giving up, replays --------------------------------------------------------


@pytest.mark.parametrize("persisted", [False, True])
async def test_a_crash_between_the_void_and_the_saved_result_resumes_with_the_same_key(
    link: Link, persisted: bool
) -> None:
    cancel = link.cancel()
    link.cancels.crash_at_save(2, persisted=persisted)  # 1: void_started, 2: the result
    with pytest.raises(SimulatedCrash):
        await link.canceller().run_outcome(cancel)
    assert link.invoice_status == "void"

    outcome = await link.canceller().run_outcome(cancel)

    assert isinstance(outcome.result, PaymentLinkVoided) and outcome.result.cancel_request_id == cancel.event_id
    assert outcome.re_reported is persisted
    assert set(link.void_calls) == {("void_invoice", void_key(cancel.event_id))}
    assert len(link.void_calls) == (1 if persisted else 2)  # the second one Stripe answers from its key
    assert len(link.events(PaymentLinkVoided)) == 1 and link.events(PaymentLinkCancelRejected) == []


async def test_a_lost_void_response_is_retried_with_the_same_key(link: Link) -> None:
    cancel = link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError(), after_effect=True)
    with pytest.raises(RetryableError):
        await link.canceller().run_outcome(cancel)

    voided = (await link.canceller().run_outcome(cancel)).result

    assert isinstance(voided, PaymentLinkVoided)
    assert link.void_calls == [("void_invoice", void_key(cancel.event_id))] * 2


async def test_retries_run_out_then_a_replay_voids_with_the_same_key(link: Link) -> None:
    cancel = link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError(Reason.STRIPE_UNAVAILABLE, "Stripe 500"), times=3)
    for _ in range(3):
        with pytest.raises(RetryableError):
            await link.canceller().run_outcome(cancel)

    gave_up = await link.canceller().give_up_outcome(cancel, RetryableError(Reason.STRIPE_UNAVAILABLE, "Stripe 500"), 3)

    rejected = rejection(gave_up.result)
    assert (rejected.reason, rejected.retryable, rejected.attempt) == (CancelRejection.STRIPE_UNAVAILABLE, True, 1)
    assert rejected.message == (
        f"gave up after 3 attempt(s): Stripe 500; `paylink replay --event-id {cancel.event_id}` resumes it"
    )
    assert link.cancels.record(cancel.event_id).status is CancelStatus.GAVE_UP and link.invoice_status == "open"
    assert (await link.canceller().give_up_outcome(cancel, RuntimeError("x"), 1)).re_reported

    replayed = await link.canceller().prepare_replay(cancel.event_id)
    assert replayed == cancel and link.cancels.record(cancel.event_id).attempt == 2
    voided = (await link.canceller().run_outcome(replayed)).result

    assert isinstance(voided, PaymentLinkVoided) and voided.cancel_request_id == cancel.event_id
    assert set(link.void_calls) == {("void_invoice", void_key(cancel.event_id))}
    with pytest.raises(ReplayRefusedError, match="done"):
        await link.canceller().prepare_replay(cancel.event_id)


async def test_giving_up_on_a_bug_names_it_in_at_most_200_characters(link: Link) -> None:
    bug = ValueError("boom" * 100)

    rejected = rejection((await link.canceller().give_up_outcome(link.cancel(), bug, 1)).result)

    assert rejected.message.startswith(f"gave up after 1 attempt(s): {repr(bug)[:199]}…;")


async def test_replay_refuses_unknown_permanent_and_running_cancels(link: Link) -> None:
    canceller = link.canceller()
    unknown = new_request_id()
    with pytest.raises(ReplayRefusedError) as refused:
        await canceller.prepare_replay(unknown)
    assert str(refused.value) == f"no cancel {unknown}"
    other = link.cancel(account_id="acc_other")
    await canceller.run_outcome(other)
    with pytest.raises(ReplayRefusedError, match="PaymentLinkCancelRejected"):
        await canceller.prepare_replay(other.event_id)
    running = link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError())
    with pytest.raises(RetryableError):
        await canceller.run_outcome(running)
    with pytest.raises(ReplayRefusedError) as refused:
        await canceller.prepare_replay(running.event_id)
    assert str(refused.value) == f"cancel {running.event_id} is running (no result yet)"
    saved = link.cancels.record(running.event_id).updated_at
    with pytest.raises(ReplayRefusedError, match="running"):
        await canceller.prepare_replay(running.event_id, running_stale_before=saved)


async def test_a_cancel_abandoned_running_resumes_as_recorded_when_stale(link: Link) -> None:
    cancel = link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError())
    with pytest.raises(RetryableError):
        await link.canceller().run_outcome(cancel)  # a replay killed here leaves it running, void started
    saved = link.cancels.record(cancel.event_id)

    resumed = await link.canceller().prepare_replay(
        cancel.event_id, running_stale_before=saved.updated_at + timedelta(microseconds=1)
    )

    assert resumed == cancel and link.cancels.record(cancel.event_id) == saved  # as recorded: nothing saved
    voided = (await link.canceller().run_outcome(resumed)).result
    assert isinstance(voided, PaymentLinkVoided) and set(link.void_calls) == {
        ("void_invoice", void_key(cancel.event_id))
    }


async def test_a_retryably_rejected_cancel_is_replayed_once_the_link_exists() -> None:
    world = World()
    request = make_request()
    world.billing.faults.add("finalize_invoice", RetryableError(), times=3)
    failed = await run_like_worker(world.saga(), request)
    assert isinstance(failed, PaymentLinkFailed) and failed.retryable
    link = Link(world, FakeLifecycleStore(), FakeCancelStore(), None)  # type: ignore[arg-type]
    cancel = link.cancel(payment_link_id=request.event_id)
    assert rejection((await link.canceller().run_outcome(cancel)).result).retryable
    await world.saga().replay(request.event_id)

    voided = (await link.canceller().run_outcome(await link.canceller().prepare_replay(cancel.event_id))).result

    assert isinstance(voided, PaymentLinkVoided)


# --- the webhook and the cancel converge on one event ---------------------------------------------------


async def test_a_voided_webhook_before_the_cancels_observe_still_credits_the_cancel(link: Link) -> None:
    cancel = link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError(), after_effect=True)  # voided; reply lost
    with pytest.raises(RetryableError):
        await link.canceller().run_outcome(cancel)

    by_webhook = await link.lifecycle().observe(link.webhook())  # Stripe's invoice.voided comes first
    result = (await link.canceller().run_outcome(cancel)).result

    assert by_webhook.outcome is Outcome.APPLIED
    voided = by_webhook.events[0]
    assert isinstance(voided, PaymentLinkVoided)
    assert (voided.source, voided.cancel_request_id) == (Source.CANCEL, cancel.event_id)
    assert result == voided and link.events(PaymentLinkVoided) == [voided]


async def test_a_voided_webhook_after_the_cancel_publishes_nothing_new(link: Link) -> None:
    cancel = link.cancel()
    voided = (await link.canceller().run_outcome(cancel)).result
    events = dict(link.world.outbox.events)

    observed = await link.lifecycle().observe(link.webhook())

    assert observed.outcome is Outcome.UNCHANGED and link.world.outbox.events == events
    assert link.events(PaymentLinkVoided) == [voided]


async def test_a_void_in_the_dashboard_before_any_cancel_stays_the_webhooks(link: Link) -> None:
    link.set_invoice_status("void")
    by_webhook = await link.lifecycle().observe(link.webhook())

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    voided = by_webhook.events[0]
    assert isinstance(voided, PaymentLinkVoided)
    assert (voided.source, voided.cancel_request_id) == (Source.WEBHOOK, None)
    assert rejected.reason is CancelRejection.ALREADY_VOID


async def test_two_cancels_racing_void_once_and_the_other_is_already_void(link: Link) -> None:
    first, second = link.cancel(), link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError(), after_effect=True)
    with pytest.raises(RetryableError):
        await link.canceller().run_outcome(first)  # intent recorded, invoice voided, reply lost

    late = rejection((await link.canceller().run_outcome(second)).result)
    won = (await link.canceller().run_outcome(first)).result

    assert late.reason is CancelRejection.ALREADY_VOID
    assert isinstance(won, PaymentLinkVoided) and won.cancel_request_id == first.event_id
    assert len(link.events(PaymentLinkVoided)) == 1


async def test_a_cancel_resuming_at_a_void_another_cancel_made_is_already_void(link: Link) -> None:
    first, second = link.cancel(), link.cancel()
    now = link.world.clock.now()
    started = await link.cancels.create_if_absent(CancelRecord.start(second, now))
    await link.cancels.save(started.voiding(now))  # the second passed its checks, then its worker died
    await link.canceller().run_outcome(first)

    late = rejection((await link.canceller().run_outcome(second)).result)

    assert late.reason is CancelRejection.ALREADY_VOID
    assert late.message == f"invoice {link.created.invoice_id} was voided before, by cancel {first.event_id}"
    assert len(link.events(PaymentLinkVoided)) == 1


async def test_a_cancel_resuming_at_a_void_made_in_the_dashboard_is_already_void_by_stripe(link: Link) -> None:
    cancel = link.cancel()
    now = link.world.clock.now()
    started = await link.cancels.create_if_absent(CancelRecord.start(cancel, now))
    await link.cancels.save(started.voiding(now))
    link.set_invoice_status("void")
    await link.lifecycle().observe(link.webhook())  # noticed before the cancel recorded its intent

    late = rejection((await link.canceller().run_outcome(cancel)).result)

    assert link.lifecycles.record(link.created.payment_link_id).cancel_request_id is None  # final: no intent

    assert late.message == f"invoice {link.created.invoice_id} was voided before, by Stripe"


async def test_a_void_not_yet_visible_after_the_call_is_retried(link: Link) -> None:
    original = link.world.billing.void_invoice

    async def void_later(stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        await original(stripe_account, invoice_id, idempotency_key)
        link.set_invoice_status("open")  # the read after it does not show it yet

    link.world.billing.void_invoice = void_later  # type: ignore[method-assign]

    with pytest.raises(RetryableError, match="is not void yet"):
        await link.canceller().run_outcome(link.cancel())


# --- unparseable cancels --------------------------------------------------------------------------------


async def test_an_unparseable_cancel_is_rejected_as_invalid_event_with_a_stable_id(link: Link) -> None:
    raw = (
        b'{"event_type": "PaymentLinkCancelRequested", "event_id": "E-1", "payment_link_id": "L-1", '
        b'"account_id": "a", "contact_id": "c", "correlation_id": "k"}'
    )
    error = PermanentError(Reason.INVALID_EVENT, "invalid PaymentLinkCancelRequested: schema_version: missing")

    first = await link.canceller().reject_unparseable(raw, error)
    link.world.clock.advance(timedelta(minutes=1))
    again = await link.canceller().reject_unparseable(raw, error)

    assert first is not None and again is not None and first.event_id == again.event_id
    assert first.event_id == str(uuid.uuid5(uuid.UUID("6f1d8a52-3c4e-4b8e-9a57-2f0b7f5d9c11"), "cancel/E-1"))
    assert (first.reason, first.cancel_request_id, first.payment_link_id, first.account_id) == (
        CancelRejection.INVALID_EVENT,
        "E-1",
        "L-1",
        "a",
    )
    assert (first.message, first.retryable, first.attempt) == (error.message, False, 1)
    assert (first.contact_id, first.correlation_id) == ("c", "k")
    assert link.events(PaymentLinkCancelRejected) == [first]
    for hopeless in (b"nope", b'{"event_type": "PaymentLinkCancelRequested", "event_id": "E-2"}', b'{"event_id": "E"}'):
        assert await link.canceller().reject_unparseable(hopeless, error) is None


async def test_the_cancel_that_voids_is_credited_even_when_another_recorded_its_intent_since(link: Link) -> None:
    cancel = link.cancel()
    original = link.world.billing.void_invoice

    async def another_intends_then_void(stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        record = link.lifecycles.record(link.created.payment_link_id)
        await link.lifecycles.save(record.with_cancel_intent("other-cancel", link.world.clock.now()))
        await original(stripe_account, invoice_id, idempotency_key)

    link.world.billing.void_invoice = another_intends_then_void  # type: ignore[method-assign]

    voided = (await link.canceller().run_outcome(cancel)).result

    assert isinstance(voided, PaymentLinkVoided) and voided.cancel_request_id == cancel.event_id


async def test_a_void_that_lost_to_a_payment_is_already_paid(link: Link) -> None:
    cancel = link.cancel()
    now = link.world.clock.now()
    started = await link.cancels.create_if_absent(CancelRecord.start(cancel, now))
    await link.cancels.save(started.voiding(now))  # checks passed, then the worker died
    await link.lifecycle().observe(link.webhook("paid", "evt_paid"))  # the lifecycle saw it paid meanwhile

    rejected = rejection((await link.canceller().run_outcome(cancel)).result)

    assert rejected.reason is CancelRejection.ALREADY_PAID
    assert rejected.message == f"invoice {link.created.invoice_id} was paid before it could be voided"
