"""``LinkLifecycle.observe`` (domain/lifecycle_service.py) on the fakes: who may move a link, what reaches
the outbox and in which order, duplicates, crashes and concurrent observers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import ConcurrentUpdateError, Reason, RetryableError
from domain.events import PaymentLinkCreated
from domain.lifecycle import InvoiceSnapshot, LinkStatus, Observation
from domain.lifecycle_events import Source, Transition, lifecycle_event_id
from domain.lifecycle_service import LinkLifecycle, Observed, Outcome
from domain.saga_record import SagaRecord
from tests.fakes.faults import SimulatedCrash
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import REQUEST_ID, STRIPE_ACCOUNT, World, make_request, new_request_id, run_like_worker

KINDS = {"paid": "invoice.paid", "void": "invoice.voided", "uncollectible": "invoice.marked_uncollectible"}


@dataclass
class Link:
    world: World
    store: FakeLifecycleStore
    lifecycle: LinkLifecycle
    created: PaymentLinkCreated
    sequence: int = 0

    def seen(
        self,
        status: str,
        *,
        kind: str | None = None,
        source: Source = Source.WEBHOOK,
        event_id: str | None = None,
        **changes: Any,
    ) -> Observation:
        """An observation of the link's invoice; a webhook's carries a new Stripe event id."""
        self.sequence += 1
        webhook = source is Source.WEBHOOK
        snapshot = {
            "invoice_id": self.created.invoice_id,
            "status": status,
            "payment_link_id": self.created.payment_link_id,
            "amount_remaining": self.created.amount_due,
            "currency": "usd",
            **changes.pop("snapshot", {}),
        }
        fields: dict[str, Any] = {
            "snapshot": InvoiceSnapshot(**snapshot),
            "stripe_account": STRIPE_ACCOUNT,
            "source": source,
            "occurred_at": self.world.clock.now(),
            "stripe_event_id": (event_id or f"evt_{self.sequence}") if webhook else None,
            "stripe_event_type": (kind or KINDS.get(status)) if webhook else None,
        }
        return Observation(**{**fields, **changes})

    async def observe(self, observation: Observation) -> Observed:
        return await self.lifecycle.observe(observation)

    def published(self) -> list[str]:
        """The lifecycle events in the outbox, in order (the saga's result left out)."""
        return [e.event_type for e in self.world.outbox.ordered if e.event_type != "PaymentLinkCreated"]


def lifecycle_for(world: World, store: FakeLifecycleStore) -> LinkLifecycle:
    return LinkLifecycle(sagas=world.store, store=store, outbox=world.outbox, clock=world.clock)


@pytest.fixture
async def link() -> Link:
    world = World()
    created = await run_like_worker(world.saga(), make_request())
    assert isinstance(created, PaymentLinkCreated)
    store = FakeLifecycleStore()
    return Link(world, store, lifecycle_for(world, store), created)


def after_due(link: Link) -> None:
    link.world.clock.advance(timedelta(days=15))


# --- transitions reach the outbox ---------------------------------------------------------------------


async def test_a_paid_webhook_publishes_paid_and_stores_the_story(link: Link) -> None:
    paid_at = datetime(2030, 1, 16, 8, tzinfo=UTC)

    observed = await link.observe(link.seen("paid", snapshot={"amount_paid": 8000, "paid_at": paid_at}))

    assert observed.outcome is Outcome.APPLIED and [e.event_type for e in observed.events] == ["PaymentLinkPaid"]
    event = observed.events[0]
    assert link.world.outbox.events[event.event_id] == event
    assert event.event_id == lifecycle_event_id(link.created.payment_link_id, Transition.PAID)
    assert (event.account_id, event.contact_id, event.correlation_id, event.invoice_id) == (
        link.created.account_id,
        link.created.contact_id,
        link.created.correlation_id,
        link.created.invoice_id,
    )
    stored = link.store.record(link.created.payment_link_id)
    assert observed.record == stored and stored.status is LinkStatus.PAID
    assert stored.unappended == [] and stored.stripe_event_ids == ["evt_1"]
    assert stored.due_date == link.created.due_date and stored.stripe_account == STRIPE_ACCOUNT


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([("uncollectible", {}), ("paid", {})], ["Uncollectible", "Paid"], id="uncollectible-then-paid"),
        pytest.param([("uncollectible", {}), ("void", {})], ["Uncollectible", "Voided"], id="uncollectible-then-void"),
        pytest.param([("void", {})], ["Voided"], id="open-then-void"),
        pytest.param(
            [("open", {"kind": "invoice.payment_failed"}), ("open", {"kind": "invoice.payment_failed"}), ("paid", {})],
            ["PaymentFailed", "PaymentFailed", "Paid"],
            id="two-failed-attempts-then-paid",
        ),
        pytest.param([("paid", {}), ("uncollectible", {})], ["Paid"], id="late-uncollectible-after-paid"),
        pytest.param([("paid", {}), ("void", {})], ["Paid"], id="void-after-paid"),
        pytest.param(
            [("paid", {}), ("open", {"kind": "invoice.payment_failed"})], ["Paid"], id="stale-failure-after-paid"
        ),
    ],
)
async def test_transitions_are_published_once_in_order_and_never_backwards(
    link: Link, steps: list[tuple[str, dict[str, Any]]], expected: list[str]
) -> None:
    for status, changes in steps:
        await link.observe(link.seen(status, **changes))

    assert link.published() == [f"PaymentLink{name}" for name in expected]


async def test_overdue_is_published_once_whoever_notices_it(link: Link) -> None:
    after_due(link)

    first = await link.observe(link.seen("open", source=Source.SCAN))
    again = [await link.observe(link.seen("open", source=source)) for source in (Source.SCAN, Source.RECONCILE)] + [
        await link.observe(link.seen("open", kind="invoice.overdue"))
    ]

    assert first.outcome is Outcome.APPLIED and link.published() == ["PaymentLinkOverdue"]
    assert [o.outcome for o in again] == [Outcome.UNCHANGED] * 3 and all(o.events == [] for o in again)


async def test_overdue_and_uncollectible_then_paid(link: Link) -> None:
    after_due(link)

    await link.observe(link.seen("uncollectible", source=Source.RECONCILE))
    await link.observe(link.seen("uncollectible", source=Source.SCAN))
    await link.observe(link.seen("paid"))

    assert link.published() == ["PaymentLinkUncollectible", "PaymentLinkOverdue", "PaymentLinkPaid"]


async def test_a_transition_seen_by_reconcile_and_then_by_its_webhook_is_one_event(link: Link) -> None:
    reconciled = await link.observe(link.seen("paid", source=Source.RECONCILE))
    webhook = await link.observe(link.seen("paid"))

    assert reconciled.outcome is Outcome.APPLIED and webhook.outcome is Outcome.UNCHANGED
    assert link.published() == ["PaymentLinkPaid"] and reconciled.events[0].source is Source.RECONCILE
    assert link.store.record(link.created.payment_link_id).stripe_event_ids == ["evt_2"]


async def test_nothing_new_from_a_read_saves_nothing(link: Link) -> None:
    observed = await link.observe(link.seen("open", source=Source.RECONCILE))

    assert observed.outcome is Outcome.UNCHANGED and observed.events == [] and link.store.saves == 0
    assert observed.record == link.store.record(link.created.payment_link_id)


# --- duplicates ------------------------------------------------------------------------------------------


async def test_a_redelivered_stripe_event_is_a_duplicate(link: Link) -> None:
    failed = link.seen("open", kind="invoice.payment_failed", event_id="evt_failed")
    await link.observe(failed)
    appends, saves = link.world.outbox.appends, link.store.saves

    again = await link.observe(failed)

    assert again.outcome is Outcome.DUPLICATE and again.events == []
    assert again.record == link.store.record(link.created.payment_link_id)
    assert link.world.outbox.appends == appends and link.store.saves == saves
    assert link.published() == ["PaymentLinkPaymentFailed"]


async def test_a_redelivered_event_that_moved_nothing_is_a_duplicate_too(link: Link) -> None:
    await link.observe(link.seen("paid"))
    late = link.seen("uncollectible", event_id="evt_late")
    assert (await link.observe(late)).outcome is Outcome.UNCHANGED

    assert (await link.observe(late)).outcome is Outcome.DUPLICATE


# --- who may move a link ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param(
            {"stripe_account": "acct_attacker"},
            "the event comes from another Stripe account than the link's",
            id="foreign-account",
        ),
        pytest.param(
            {"snapshot": {"invoice_id": "in_other"}}, "the invoice is not the link's invoice", id="other-invoice"
        ),
        pytest.param({"snapshot": {"payment_link_id": new_request_id()}}, "unknown payment link", id="unknown-link"),
        pytest.param(
            {"snapshot": {"payment_link_id": None}},
            "the invoice is not a payment link's (no metadata.payment_link_id)",
            id="no-metadata",
        ),
    ],
)
async def test_an_observation_that_is_not_the_links_is_ignored_and_stores_nothing(
    link: Link, changes: dict[str, Any], reason: str
) -> None:
    outbox_before = dict(link.world.outbox.events)

    observed = await link.observe(link.seen("paid", **changes))

    assert observed.outcome is Outcome.IGNORED and observed.reason == reason and observed.events == []
    assert link.store.documents == {} and link.world.outbox.events == outbox_before


@pytest.mark.parametrize(
    "changes",
    [{"stripe_account": "acct_attacker"}, {"snapshot": {"invoice_id": "in_other"}}],
    ids=["foreign-account", "other-invoice"],
)
async def test_a_foreign_observation_never_moves_a_link_with_a_record(link: Link, changes: dict[str, Any]) -> None:
    await link.observe(link.seen("uncollectible"))
    before = link.store.record(link.created.payment_link_id)

    observed = await link.observe(link.seen("paid", **changes))

    assert observed.outcome is Outcome.IGNORED and link.store.record(link.created.payment_link_id) == before
    assert link.published() == ["PaymentLinkUncollectible"]


async def test_a_link_whose_saga_is_running_is_pending(link: Link) -> None:
    running = SagaRecord.start(make_request(event_id=new_request_id()), link.world.clock.now())
    await link.world.store.create_if_absent(running)

    observed = await link.observe(link.seen("paid", snapshot={"payment_link_id": running.payment_link_id}))

    assert observed.outcome is Outcome.PENDING and observed.reason == "the link's saga is still running"
    assert link.store.documents == {}


async def test_a_link_whose_saga_failed_is_ignored(link: Link) -> None:
    request = make_request(event_id=new_request_id(), line_items=[{"price_id": "price_missing", "quantity": 1}])
    failed = await run_like_worker(link.world.saga(), request)
    assert failed.event_type == "PaymentLinkFailed"

    observed = await link.observe(link.seen("void", snapshot={"payment_link_id": request.event_id}))

    assert observed.outcome is Outcome.IGNORED and "failed" in observed.reason and link.store.documents == {}


# --- crashes and concurrent observers ------------------------------------------------------------------------


async def test_events_claimed_before_a_crash_are_appended_first_by_the_next_observer(link: Link) -> None:
    await link.observe(link.seen("open", source=Source.RECONCILE))  # the record exists
    link.world.outbox.faults.add("append", SimulatedCrash("died after the claim"))
    with pytest.raises(SimulatedCrash):
        await link.observe(link.seen("uncollectible"))
    claimed = link.store.record(link.created.payment_link_id)
    assert [e.transition for e in claimed.unappended] == [Transition.UNCOLLECTIBLE] and link.published() == []

    observed = await link.observe(link.seen("paid"))

    assert link.published() == ["PaymentLinkUncollectible", "PaymentLinkPaid"]
    assert [e.event_type for e in observed.events] == ["PaymentLinkPaid"]
    assert link.store.record(link.created.payment_link_id).unappended == []


async def test_a_redelivery_of_the_crashed_event_appends_what_is_owed(link: Link) -> None:
    paid = link.seen("paid")
    await link.observe(link.seen("open", source=Source.RECONCILE))  # the record exists
    link.world.outbox.faults.add("append", SimulatedCrash("died after the claim"))
    with pytest.raises(SimulatedCrash):
        await link.observe(paid)

    again = await link.observe(paid)

    assert again.outcome is Outcome.DUPLICATE and link.published() == ["PaymentLinkPaid"]
    assert link.store.record(link.created.payment_link_id).unappended == []


async def test_paid_claimed_first_beats_a_racing_uncollectible(link: Link) -> None:
    await link.observe(link.seen("open", source=Source.RECONCILE))  # the record exists
    uncollectible = link.seen("uncollectible")
    other = lifecycle_for(link.world, link.store)
    outcomes: list[Observed] = []

    async def paid_lands_first() -> None:
        outcomes.append(await other.observe(link.seen("paid")))

    link.store.before_save.append(paid_lands_first)
    late = await link.observe(uncollectible)

    assert outcomes[0].outcome is Outcome.APPLIED and late.outcome is Outcome.UNCHANGED
    assert link.published() == ["PaymentLinkPaid"]
    stored = link.store.record(link.created.payment_link_id)
    assert stored.status is LinkStatus.PAID and stored.has_seen(uncollectible.stripe_event_id)


async def test_uncollectible_claimed_first_is_published_before_paid(link: Link) -> None:
    await link.observe(link.seen("open", source=Source.RECONCILE))
    other = lifecycle_for(link.world, link.store)
    outcomes: list[Observed] = []

    async def uncollectible_lands_first() -> None:
        outcomes.append(await other.observe(link.seen("uncollectible")))

    link.store.before_save.append(uncollectible_lands_first)
    paid = await link.observe(link.seen("paid"))

    assert outcomes[0].outcome is Outcome.APPLIED and paid.outcome is Outcome.APPLIED
    assert link.published() == ["PaymentLinkUncollectible", "PaymentLinkPaid"]


async def test_an_observer_saving_between_append_and_mark_leaves_nothing_owed(link: Link) -> None:
    other = lifecycle_for(link.world, link.store)
    outcomes: list[Observed] = []

    async def nothing() -> None:
        return None

    async def another_event_lands() -> None:
        outcomes.append(await other.observe(link.seen("uncollectible")))

    link.store.before_save.extend([nothing, another_event_lands])  # the claim, then the mark
    paid = await link.observe(link.seen("paid"))

    assert paid.outcome is Outcome.APPLIED and outcomes[0].outcome is Outcome.UNCHANGED
    assert link.published() == ["PaymentLinkPaid"]
    assert link.store.record(link.created.payment_link_id).unappended == []


async def test_an_observer_that_keeps_losing_gives_up_with_a_retryable_error(link: Link) -> None:
    await link.observe(link.seen("open", source=Source.RECONCILE))
    conflict = ConcurrentUpdateError(link.created.payment_link_id, 0)
    link.store.faults.add("save", conflict, times=None)

    with pytest.raises(ConcurrentUpdateError) as raised:
        await link.observe(link.seen("paid"))

    assert raised.value.retryable and link.published() == []
    assert (raised.value.payment_link_id, raised.value.expected_version) == (link.created.payment_link_id, 0)
    link.store.faults.clear()
    assert (await link.observe(link.seen("paid"))).outcome is Outcome.APPLIED


async def test_owed_events_that_cannot_be_marked_give_up_with_a_retryable_error(link: Link) -> None:
    await link.observe(link.seen("open", source=Source.RECONCILE))  # the record exists
    link.world.outbox.faults.add("append", SimulatedCrash("died after the claim"))
    with pytest.raises(SimulatedCrash):
        await link.observe(link.seen("paid"))
    link.store.faults.add("save", ConcurrentUpdateError(link.created.payment_link_id, 1), times=None)
    saves = link.store.saves

    with pytest.raises(ConcurrentUpdateError) as raised:
        await link.observe(link.seen("open", source=Source.RECONCILE))

    assert (raised.value.payment_link_id, raised.value.expected_version) == (link.created.payment_link_id, 1)
    assert link.published() == ["PaymentLinkPaid"]  # appended, just not marked
    assert link.store.saves == saves  # every save refused


async def test_a_link_with_a_record_no_longer_needs_its_saga(link: Link) -> None:
    await link.observe(link.seen("uncollectible"))
    link.world.store.faults.add("load", RetryableError(Reason.INTERNAL_ERROR, "sagas unreachable"), times=None)

    observed = await link.observe(link.seen("paid"))

    assert observed.outcome is Outcome.APPLIED and link.published() == ["PaymentLinkUncollectible", "PaymentLinkPaid"]


async def test_a_link_whose_created_result_was_never_appended_gets_it_before_its_lifecycle_events() -> None:
    """The saga saved "created" and the worker died before appending PaymentLinkCreated; a webhook comes."""
    world = World()
    world.outbox.faults.add("append", RuntimeError("the worker died"), times=1)
    with pytest.raises(RuntimeError):
        await world.saga().run(make_request())
    assert world.outbox.ordered == [], "the saga is created, its result not yet in the outbox"
    store = FakeLifecycleStore()
    saga = world.store.record(REQUEST_ID)
    created = saga.result
    assert isinstance(created, PaymentLinkCreated)
    link = Link(world, store, lifecycle_for(world, store), created)

    await link.observe(link.seen("paid"))

    assert [e.event_type for e in world.outbox.ordered] == ["PaymentLinkCreated", "PaymentLinkPaid"]
    assert world.outbox.ordered[0] == created, "the stored result itself, same event_id"
