"""``LinkCanceller`` (domain/cancel.py) on the fakes: an open link voided once, who may cancel, what
cannot be cancelled, and a cancel waiting for its link's creation."""

from __future__ import annotations

import logging

import pytest

from domain.cancel import void_key
from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected
from domain.cancel_record import CancelStatus
from domain.errors import PermanentError, Reason, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.lifecycle import InvoiceSnapshot, LinkStatus
from domain.lifecycle_events import PaymentLinkVoided, Source, Transition, lifecycle_event_id
from tests.fakes.cancels import FakeCancelStore
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import ACCOUNT, CONTACT, STRIPE_ACCOUNT, World, make_request, new_request_id, run_like_worker
from tests.unit.cancel_link import Link, created_link, rejection


@pytest.fixture
async def link() -> Link:
    return await created_link()


# --- an open link is voided once ---------------------------------------------------------------------


async def test_an_open_link_is_voided_with_the_cancels_key_and_answered_by_its_voided_event(link: Link) -> None:
    cancel = link.cancel()

    outcome = await link.canceller().run_outcome(cancel)

    voided = outcome.result
    assert isinstance(voided, PaymentLinkVoided) and not outcome.re_reported
    assert voided.event_id == lifecycle_event_id(link.created.payment_link_id, Transition.VOIDED)
    assert (voided.source, voided.cancel_request_id) == (Source.CANCEL, cancel.event_id)
    assert (voided.account_id, voided.contact_id, voided.invoice_id) == (ACCOUNT, CONTACT, link.created.invoice_id)
    assert voided.correlation_id == link.created.correlation_id  # the link's, as every lifecycle event
    assert link.invoice_status == "void" and link.void_calls == [("void_invoice", void_key(cancel.event_id))]
    assert link.events(PaymentLinkVoided) == [voided]
    stored = link.cancels.record(cancel.event_id)
    assert stored.status is CancelStatus.DONE and stored.void_started and stored.result_event() == voided
    lifecycle = link.lifecycles.record(link.created.payment_link_id)
    assert lifecycle.status is LinkStatus.VOID and lifecycle.cancel_request_id == cancel.event_id
    assert (lifecycle.due_date, lifecycle.stripe_account) == (link.created.due_date, STRIPE_ACCOUNT)
    assert lifecycle.unappended == []


async def test_a_duplicate_cancel_re_reports_the_same_result_and_voids_nothing_more(link: Link) -> None:
    cancel = link.cancel()
    first = await link.canceller().run_outcome(cancel)
    appended, calls = link.world.outbox.appends, list(link.world.billing.calls)

    again = await link.canceller().run_outcome(cancel)

    assert again.re_reported and again.result == first.result
    assert link.world.billing.calls == calls and len(link.void_calls) == 1
    assert link.world.outbox.appends == appended + 1 and len(link.world.outbox.events) == 2  # created + voided


async def test_a_second_cancel_of_a_voided_link_is_already_void_without_a_stripe_call(link: Link) -> None:
    first = link.cancel()
    await link.canceller().run_outcome(first)
    calls = list(link.world.billing.calls)

    second = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert second.reason is CancelRejection.ALREADY_VOID and not second.retryable
    assert link.world.billing.calls == calls  # the lifecycle record said so
    assert link.events(PaymentLinkVoided)[0].cancel_request_id == first.event_id


# --- who may cancel, and what cannot be cancelled ------------------------------------------------------


async def test_another_tenants_cancel_is_not_found_and_touches_nothing(link: Link) -> None:
    calls = list(link.world.billing.calls)
    cancel = link.cancel(account_id="acc_other")

    rejected = rejection((await link.canceller().run_outcome(cancel)).result)

    assert rejected.reason is CancelRejection.PAYMENT_LINK_NOT_FOUND and not rejected.retryable
    assert rejected.message == f"no payment link {link.created.payment_link_id} in account acc_other"
    assert (rejected.account_id, rejected.contact_id, rejected.cancel_request_id) == (
        "acc_other",
        CONTACT,
        cancel.event_id,
    )
    assert (rejected.correlation_id, rejected.attempt, rejected.payment_link_id) == (
        "corr-cancel",
        1,
        link.created.payment_link_id,
    )
    assert link.world.billing.calls == calls and link.invoice_status == "open"
    assert link.lifecycles.documents == {} and link.events(PaymentLinkCancelRejected) == [rejected]


async def test_an_unknown_link_is_not_found(link: Link) -> None:
    rejected = rejection((await link.canceller().run_outcome(link.cancel(payment_link_id=new_request_id()))).result)

    assert rejected.reason is CancelRejection.PAYMENT_LINK_NOT_FOUND


async def test_a_failed_link_is_not_created_and_retryable_only_when_its_failure_was() -> None:
    world = World()
    link = Link(world, FakeLifecycleStore(), FakeCancelStore(), None)  # type: ignore[arg-type]
    permanent = await run_like_worker(world.saga(), make_request(contact_id="nobody", event_id=new_request_id()))
    world.billing.faults.add("create_draft_invoice", RetryableError(), times=None)
    transient = await run_like_worker(world.saga(), make_request(event_id=new_request_id()))
    assert isinstance(permanent, PaymentLinkFailed) and isinstance(transient, PaymentLinkFailed)
    calls = list(world.billing.calls)

    answers = [
        rejection((await link.canceller().run_outcome(link.cancel(payment_link_id=failed.payment_link_id))).result)
        for failed in (permanent, transient)
    ]

    assert [(a.reason, a.retryable) for a in answers] == [
        (CancelRejection.NOT_CREATED, False),
        (CancelRejection.NOT_CREATED, True),
    ]
    assert (
        answers[0].message
        == f"payment link {permanent.payment_link_id} was not created (contact_not_found): nothing to cancel"
    )
    assert world.billing.calls == calls


@pytest.mark.parametrize(("status", "reason"), [("paid", "already_paid"), ("void", "already_void")])
async def test_a_paid_or_void_invoice_is_never_voided(link: Link, status: str, reason: str) -> None:
    link.set_invoice_status(status)

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert rejected.reason == reason and not rejected.retryable
    assert rejected.message == f"invoice {link.created.invoice_id} is {'paid' if status == 'paid' else 'void already'}"
    assert link.void_calls == [] and link.lifecycles.documents == {}


async def test_a_link_the_lifecycle_knows_is_paid_is_already_paid_without_reading_stripe(link: Link) -> None:
    link.set_invoice_status("paid")
    await link.lifecycle().observe(link.webhook("paid", "evt_paid"))
    calls = list(link.world.billing.calls)

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert rejected.reason is CancelRejection.ALREADY_PAID and link.world.billing.calls == calls


async def test_an_invoice_gone_from_stripe_is_not_found(link: Link) -> None:
    del link.world.billing.invoices[link.created.invoice_id]

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert rejected.reason is CancelRejection.PAYMENT_LINK_NOT_FOUND
    assert rejected.message == f"invoice {link.created.invoice_id} no longer exists in Stripe"


async def test_a_void_refused_because_the_invoice_was_paid_meanwhile_is_already_paid(link: Link) -> None:
    original = link.world.billing.retrieve_invoice

    async def read_then_pay(stripe_account: str, invoice_id: str) -> InvoiceSnapshot | None:
        snapshot = await original(stripe_account, invoice_id)
        link.set_invoice_status("paid")  # the customer pays between the cancel's read and its void
        return snapshot

    link.world.billing.retrieve_invoice = read_then_pay  # type: ignore[method-assign]

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert rejected.reason is CancelRejection.ALREADY_PAID
    assert rejected.message == f"invoice {link.created.invoice_id} is paid"
    assert link.lifecycles.record(link.created.payment_link_id).cancel_request_id is None  # intent withdrawn


async def test_a_void_stripe_refuses_otherwise_is_rejected_with_stripes_message(link: Link) -> None:
    link.world.billing.faults.add("void_invoice", PermanentError(Reason.STRIPE_PERMISSION_DENIED, "account revoked"))

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert rejected.reason is CancelRejection.STRIPE_UNAVAILABLE and not rejected.retryable
    assert rejected.message == f"Stripe refused to void invoice {link.created.invoice_id}: account revoked"
    assert link.invoice_status == "open"
    assert link.lifecycles.record(link.created.payment_link_id).cancel_request_id is None


async def test_a_void_refused_because_it_was_void_already_still_answers_with_the_voided_event(link: Link) -> None:
    cancel = link.cancel()
    link.world.billing.faults.add("void_invoice", PermanentError(Reason.STRIPE_INVALID_REQUEST, "already void"))
    canceller = link.canceller()
    original = link.world.billing.void_invoice

    async def void_elsewhere(stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        link.set_invoice_status("void")  # voided in the dashboard a moment before
        await original(stripe_account, invoice_id, idempotency_key)

    link.world.billing.void_invoice = void_elsewhere  # type: ignore[method-assign]

    voided = (await canceller.run_outcome(cancel)).result

    assert isinstance(voided, PaymentLinkVoided) and voided.cancel_request_id == cancel.event_id


# --- waiting for a running creation --------------------------------------------------------------------


async def test_a_cancel_of_a_link_still_being_created_waits_and_then_voids() -> None:
    world = World()
    request = make_request()
    world.billing.faults.add("finalize_invoice", RetryableError(), times=1)
    with pytest.raises(RetryableError):
        await world.saga().run(request)  # the creation is under way: its saga is running
    link = Link(world, FakeLifecycleStore(), FakeCancelStore(), None)  # type: ignore[arg-type]
    cancel = link.cancel(payment_link_id=request.event_id)

    with pytest.raises(RetryableError) as waiting:
        await link.canceller().run_outcome(cancel)
    assert waiting.value.reason is Reason.STRIPE_UNAVAILABLE and "still being created" in waiting.value.message
    assert (
        world.billing.keys_used[-1][0] != "void_invoice" and link.cancels.record(cancel.event_id).void_started is False
    )

    created = await world.saga().run(request)  # the creation finishes
    assert isinstance(created, PaymentLinkCreated)
    voided = (await link.canceller().run_outcome(cancel)).result

    assert isinstance(voided, PaymentLinkVoided) and voided.invoice_id == created.invoice_id
    assert [type(e).__name__ for e in world.outbox.ordered] == ["PaymentLinkCreated", "PaymentLinkVoided"]


async def test_a_refused_void_leaves_another_cancels_intent_in_place(link: Link) -> None:
    original = link.world.billing.void_invoice

    async def another_cancel_then_refuse(stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        record = link.lifecycles.record(link.created.payment_link_id)
        await link.lifecycles.save(record.with_cancel_intent("other-cancel", link.world.clock.now()))
        link.world.billing.void_invoice = original  # type: ignore[method-assign]
        raise PermanentError(Reason.STRIPE_PERMISSION_DENIED, "account revoked")

    link.world.billing.void_invoice = another_cancel_then_refuse  # type: ignore[method-assign]

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert rejected.reason is CancelRejection.STRIPE_UNAVAILABLE
    assert link.lifecycles.record(link.created.payment_link_id).cancel_request_id == "other-cancel"


async def test_a_refused_void_of_an_invoice_gone_from_stripe_is_rejected_with_stripes_message(link: Link) -> None:
    async def delete_then_refuse(stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        del link.world.billing.invoices[invoice_id]
        raise PermanentError(Reason.STRIPE_INVALID_REQUEST, "No such invoice")

    link.world.billing.void_invoice = delete_then_refuse  # type: ignore[method-assign]

    rejected = rejection((await link.canceller().run_outcome(link.cancel())).result)

    assert (rejected.reason, rejected.retryable) == (CancelRejection.STRIPE_UNAVAILABLE, False)
    assert rejected.message.endswith(": No such invoice")


async def test_a_rejection_is_logged_with_the_cancels_ids(link: Link, caplog: pytest.LogCaptureFixture) -> None:
    cancel = link.cancel(account_id="acc_other")

    with caplog.at_level(logging.INFO, logger="paylink.cancel"):
        await link.canceller().run_outcome(cancel)

    (logged,) = [r for r in caplog.records if r.name == "paylink.cancel"]
    assert logged.getMessage() == "cancel rejected"
    fields = {k: logged.__dict__[k] for k in ("cancel_request_id", "payment_link_id", "account_id", "attempt")}
    assert fields == {
        "cancel_request_id": cancel.event_id,
        "payment_link_id": link.created.payment_link_id,
        "account_id": "acc_other",
        "attempt": 1,
    }
    assert (logged.__dict__["reason"], logged.__dict__["retryable"]) == ("payment_link_not_found", False)
