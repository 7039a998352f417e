"""The worker and ``paylink replay`` with cancels, on the fakes: counted once, duplicates re-reported,
bad cancels dead-lettered and answered as cancels, bugs given up on retryably, replays resuming."""

from __future__ import annotations

import logging

import pytest

from consumer.app.cancels import run_cancel_with_retries
from consumer.app.replay import Replayer, ReplaySelection, ReplayTally
from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected
from domain.cancel_record import CancelStatus
from domain.errors import Reason, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.intake import parse_cancel
from domain.lifecycle_events import PaymentLinkVoided
from tests.fakes.cancels import FakeCancelStore, canceller_for
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, World, make_request, run_like_worker
from tests.unit.test_cancel_intake import CANCEL_ID, cancel_document, raw
from tests.unit.test_processing_duplicates import DeadLetters, Message, counted

# --- the worker ----------------------------------------------------------------------------------------


def handler_on(world: World) -> tuple[RequestHandler, DeadLetters, FakeCancelStore]:
    cancels, letters = FakeCancelStore(), DeadLetters()
    policy = RetryPolicy(attempts=2, initial_s=0.001, max_s=0.001)
    return (
        RequestHandler(world.saga(), letters, policy, canceller_for(world, FakeLifecycleStore(), cancels)),
        letters,
        cancels,
    )


async def test_the_worker_voids_a_link_counts_the_cancel_once_and_its_redelivery_as_a_duplicate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    assert isinstance(await run_like_worker(world.saga(), make_request()), PaymentLinkCreated)
    handler, letters, _ = handler_on(world)
    value = raw(cancel_document())
    voided_before = counted("paylink_cancels_total", outcome="voided", reason="")
    duplicates_before = counted("paylink_duplicates_total", outcome="voided")

    with caplog.at_level(logging.INFO, logger="paylink.processing"):
        for offset in (0, 1):
            job = handler.prepare(Message("requests", 0, offset, CONTACT.encode(), value))
            assert job.serial_key == (ACCOUNT, CONTACT)  # serialised with the link's own request
            await handler.handle(job)

    assert counted("paylink_cancels_total", outcome="voided", reason="") == voided_before + 1
    assert counted("paylink_duplicates_total", outcome="voided") == duplicates_before + 1
    assert letters.records == [] and [type(e).__name__ for e in world.outbox.ordered][-1] == "PaymentLinkVoided"
    logged = [
        r for r in caplog.records if r.getMessage() in ("payment link voided", "duplicate cancel; result re-reported")
    ]
    assert len(logged) == 2
    assert all(
        r.__dict__["cancel_request_id"] == CANCEL_ID and r.__dict__["payment_link_id"] == REQUEST_ID for r in logged
    )


async def test_the_worker_gives_up_on_a_link_still_being_created_with_a_retryable_rejection() -> None:
    world = World()
    world.billing.faults.add("finalize_invoice", RetryableError(), times=1)
    with pytest.raises(RetryableError):
        await world.saga().run(make_request())
    handler, _, cancels = handler_on(world)

    await handler.handle(handler.prepare(Message("requests", 0, 0, CONTACT.encode(), raw(cancel_document()))))

    rejected = world.outbox.ordered[-1]
    assert isinstance(rejected, PaymentLinkCancelRejected)
    assert (rejected.reason, rejected.retryable) == (CancelRejection.STRIPE_UNAVAILABLE, True)
    assert "still being created" in rejected.message and cancels.record(CANCEL_ID).status is CancelStatus.GAVE_UP


async def test_the_worker_dead_letters_a_bad_cancel_and_answers_it_as_a_cancel() -> None:
    world = World()
    handler, letters, _ = handler_on(world)
    rejected_before = counted("paylink_cancels_total", outcome="rejected", reason="invalid_event")

    value = raw(cancel_document(reason="x" * 501))
    await handler.handle(handler.prepare(Message("requests", 2, 7, CONTACT.encode(), value)))

    assert [(r["reason"], r["event_id"], r["offset"]) for r in letters.records] == [("invalid_event", CANCEL_ID, 7)]
    answer = world.outbox.ordered[-1]
    assert isinstance(answer, PaymentLinkCancelRejected) and answer.reason is CancelRejection.INVALID_EVENT
    assert answer.payment_link_id == REQUEST_ID and len(world.outbox.events) == 1  # no PaymentLinkFailed
    assert counted("paylink_cancels_total", outcome="rejected", reason="invalid_event") == rejected_before + 1


async def test_a_worker_without_a_canceller_dead_letters_cancels_as_a_bug() -> None:
    world, letters = World(), DeadLetters()
    handler = RequestHandler(world.saga(), letters, RetryPolicy(attempts=1, initial_s=0.001, max_s=0.001))

    await handler.handle(handler.prepare(Message("requests", 0, 0, None, raw(cancel_document()))))
    await handler.handle(handler.prepare(Message("requests", 0, 1, None, raw(cancel_document(extra=1)))))

    assert [r["reason"] for r in letters.records] == ["internal_error", "invalid_event"]
    assert world.outbox.events == {}


async def test_an_unexpected_error_in_a_cancel_dead_letters_it_and_gives_up_retryably() -> None:
    world = World()
    assert isinstance(await run_like_worker(world.saga(), make_request()), PaymentLinkCreated)
    handler, letters, cancels = handler_on(world)
    world.billing.faults.add("void_invoice", ZeroDivisionError("bug"))

    await handler.handle(handler.prepare(Message("requests", 0, 0, None, raw(cancel_document()))))

    assert [r["reason"] for r in letters.records] == ["internal_error"]
    assert cancels.record(CANCEL_ID).status is CancelStatus.GAVE_UP
    assert not isinstance(world.outbox.ordered[-1], PaymentLinkVoided)


# --- paylink replay ----------------------------------------------------------------------------------


async def test_replay_resumes_a_cancel_that_gave_up_and_skips_it_once_voided() -> None:
    world = World()
    assert isinstance(await run_like_worker(world.saga(), make_request()), PaymentLinkCreated)
    cancels, lifecycles = FakeCancelStore(), FakeLifecycleStore()
    canceller = canceller_for(world, lifecycles, cancels)
    policy = RetryPolicy(attempts=2, initial_s=0.001, max_s=0.001)
    world.billing.faults.add("void_invoice", RetryableError(Reason.STRIPE_UNAVAILABLE, "Stripe 500"), times=2)
    gave_up = await run_cancel_with_retries(canceller, policy, parse_cancel(raw(cancel_document())))
    assert isinstance(gave_up.result, PaymentLinkCancelRejected) and gave_up.result.retryable
    replayer = Replayer(world.saga(), world.store, policy, world.clock, canceller=canceller, cancels=cancels)

    (target,) = await replayer.targets(ReplaySelection(event_ids=[CANCEL_ID]))
    assert target.cancel is not None and target.replayable and target.record is None
    tally = ReplayTally()
    line = await replayer.replay_one(target, tally)

    assert line.startswith("voided  ") and tally.voided == 1 and tally.all_succeeded
    assert "replayed 1 (created 0, cancels voided 1, failed again 0)" in tally.summary()
    voided = world.outbox.ordered[-1]
    assert isinstance(voided, PaymentLinkVoided) and voided.cancel_request_id == CANCEL_ID
    (again,) = await replayer.targets(ReplaySelection(event_ids=[CANCEL_ID]))
    assert not again.replayable
    assert (await replayer.replay_one(again, tally)).startswith("skipped: cancel")
    (unknown,) = await replayer.targets(ReplaySelection(event_ids=["nothing"]))
    assert (unknown.cancel, unknown.record) == (None, None)


async def test_replay_reports_a_cancel_rejected_again() -> None:
    world = World()
    world.billing.faults.add("finalize_invoice", RetryableError(), times=3)
    assert isinstance(await run_like_worker(world.saga(), make_request()), PaymentLinkFailed)
    cancels = FakeCancelStore()
    canceller = canceller_for(world, FakeLifecycleStore(), cancels)
    policy = RetryPolicy(attempts=1, initial_s=0.001, max_s=0.001)
    await run_cancel_with_retries(canceller, policy, parse_cancel(raw(cancel_document())))  # not_created, retryable
    replayer = Replayer(world.saga(), world.store, policy, world.clock, canceller=canceller, cancels=cancels)
    tally = ReplayTally()

    (target,) = await replayer.targets(ReplaySelection(event_ids=[CANCEL_ID]))
    line = await replayer.replay_one(target, tally)

    assert line.startswith("cancel rejected again  not_created (retryable): payment link")
    assert tally.failed_again == 1 and tally.reasons == {"not_created": 1} and not tally.all_succeeded
