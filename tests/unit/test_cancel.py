"""``LinkCanceller`` (domain/cancel.py) on the fakes: who may cancel, when a cancel waits, never a second
void, crashes and redeliveries, and one ``PaymentLinkVoided`` whoever notices the void first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from domain.cancel import LinkCanceller, void_key
from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.cancel_record import CancelRecord, CancelStatus
from domain.errors import PermanentError, Reason, ReplayRefusedError, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.lifecycle import InvoiceSnapshot, LinkStatus, Observation
from domain.lifecycle_events import PaymentLinkVoided, Source, Transition, lifecycle_event_id
from domain.lifecycle_service import LinkLifecycle, Outcome
from tests.fakes.cancels import FakeCancelStore, canceller_for
from tests.fakes.faults import SimulatedCrash
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import ACCOUNT, CONTACT, STRIPE_ACCOUNT, World, make_request, new_request_id, run_like_worker


@dataclass
class Link:
    world: World
    lifecycles: FakeLifecycleStore
    cancels: FakeCancelStore
    created: PaymentLinkCreated

    def canceller(self) -> LinkCanceller:
        """A canceller on the same fakes (a restarted process when called again)."""
        return canceller_for(self.world, self.lifecycles, self.cancels)

    def cancel(self, **changes: Any) -> PaymentLinkCancelRequested:
        fields: dict[str, Any] = {
            "event_id": new_request_id(),
            "event_type": "PaymentLinkCancelRequested",
            "schema_version": 1,
            "occurred_at": self.world.clock.now(),
            "correlation_id": "corr-cancel",
            "account_id": ACCOUNT,
            "payment_link_id": changes.pop("payment_link_id", None) or self.created.payment_link_id,
            "contact_id": CONTACT,
            "reason": "wrong amount",
        }
        return PaymentLinkCancelRequested.model_validate({**fields, **changes})

    @property
    def invoice_status(self) -> str:
        return self.world.billing.invoices[self.created.invoice_id].status

    def set_invoice_status(self, status: Any) -> None:
        self.world.billing.invoices[self.created.invoice_id].status = status

    @property
    def void_calls(self) -> list[tuple[str, str]]:
        return [used for used in self.world.billing.keys_used if used[0] == "void_invoice"]

    def events(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.world.outbox.ordered if isinstance(event, kind)]

    def webhook(self, status: str = "void", event_id: str = "evt_void") -> Observation:
        return Observation(
            snapshot=InvoiceSnapshot(
                invoice_id=self.created.invoice_id, status=status, payment_link_id=self.created.payment_link_id
            ),
            stripe_account=STRIPE_ACCOUNT,
            source=Source.WEBHOOK,
            occurred_at=self.world.clock.now(),
            stripe_event_id=event_id,
            stripe_event_type=f"invoice.{'voided' if status == 'void' else status}",
        )

    def lifecycle(self) -> LinkLifecycle:
        world = self.world
        return LinkLifecycle(sagas=world.store, store=self.lifecycles, outbox=world.outbox, clock=world.clock)


@pytest.fixture
async def link() -> Link:
    world = World()
    created = await run_like_worker(world.saga(), make_request())
    assert isinstance(created, PaymentLinkCreated)
    return Link(world, FakeLifecycleStore(), FakeCancelStore(), created)


def rejection(result: object) -> PaymentLinkCancelRejected:
    assert isinstance(result, PaymentLinkCancelRejected), result
    return result


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


async def test_giving_up_on_a_bug_names_it(link: Link) -> None:
    rejected = rejection((await link.canceller().give_up_outcome(link.cancel(), ValueError("boom"), 1)).result)

    assert rejected.message.startswith("gave up after 1 attempt(s): ValueError('boom');")


async def test_replay_refuses_unknown_permanent_and_running_cancels(link: Link) -> None:
    canceller = link.canceller()
    with pytest.raises(ReplayRefusedError, match="no cancel"):
        await canceller.prepare_replay(new_request_id())
    other = link.cancel(account_id="acc_other")
    await canceller.run_outcome(other)
    with pytest.raises(ReplayRefusedError, match="PaymentLinkCancelRejected"):
        await canceller.prepare_replay(other.event_id)
    running = link.cancel()
    link.world.billing.faults.add("void_invoice", RetryableError())
    with pytest.raises(RetryableError):
        await canceller.run_outcome(running)
    with pytest.raises(ReplayRefusedError, match="no result yet"):
        await canceller.prepare_replay(running.event_id)


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
        b'{"event_type": "PaymentLinkCancelRequested", "event_id": "E-1", "payment_link_id": "L-1", "account_id": "a"}'
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
    assert (first.message, first.retryable, first.attempt, first.contact_id) == (error.message, False, 1, None)
    assert link.events(PaymentLinkCancelRejected) == [first]
    for hopeless in (b"nope", b'{"event_type": "PaymentLinkCancelRequested", "event_id": "E-2"}', b'{"event_id": "E"}'):
        assert await link.canceller().reject_unparseable(hopeless, error) is None
