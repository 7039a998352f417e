"""A payment link's lifecycle after ``PaymentLinkCreated``: its state, the rules that move it, its story.

A link is ``open`` once created; ``paid`` and ``void`` are final; ``uncollectible`` can still become
``paid`` or ``void``; ``overdue`` is a flag on an open or uncollectible link, raised at most once; each
failed payment attempt is noticed once (by the id of the ``invoice.payment_failed`` event that reported
it: Stripe's ``attempt_count`` stays 1 for the customer's later attempts on the hosted page, so it cannot
tell them apart). A final link notices nothing more. Nothing moves a link backwards:
Stripe does not promise event order, so a late ``invoice.marked_uncollectible`` after ``invoice.paid``
changes nothing.

``LifecycleRecord`` is stored beside the saga (one per link, created on the first observation). Its
``history`` keeps, for each transition, the event it produced, who noticed it and the Stripe event id
that moved it (for ``paylink show``); ``appended`` says whether that event is in the outbox yet.
``cancel_request_id`` is a cancel's intent, recorded before it voids the invoice: the ``voided``
transition is then the cancel's (``source=cancel``, its id on the event) whoever notices it first.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from domain.events import PaymentLinkCreated
from domain.lifecycle_events import (
    LifecycleEvent,
    PaymentLinkOverdue,
    PaymentLinkPaid,
    PaymentLinkPaymentFailed,
    PaymentLinkUncollectible,
    PaymentLinkVoided,
    Source,
    Transition,
    lifecycle_event_id,
)
from domain.saga_record import TIMESTAMP_FORMAT

HISTORY_KEPT = 50  # transitions kept per link: a link has at most 4 besides its failed payment attempts
STRIPE_EVENTS_KEPT = 200  # Stripe event ids remembered per link, to answer a redelivery at once


class LinkStatus(StrEnum):
    OPEN = "open"
    UNCOLLECTIBLE = "uncollectible"
    PAID = "paid"
    VOID = "void"


FINAL_STATUSES = frozenset({LinkStatus.PAID, LinkStatus.VOID})


class InvoiceSnapshot(BaseModel):
    """What paylink needs to know of a Stripe invoice, as a webhook payload or a retrieve shows it."""

    model_config = ConfigDict(frozen=True)
    invoice_id: str
    status: str = Field(description="Stripe's: draft, open, paid, void or uncollectible")
    payment_link_id: str | None = Field(None, description="from the invoice's metadata")
    amount_paid: int = 0
    amount_remaining: int = 0
    currency: str = ""
    due_date: date | None = None
    paid_at: AwareDatetime | None = None
    voided_at: AwareDatetime | None = None
    marked_uncollectible_at: AwareDatetime | None = None
    paid_out_of_band: bool = False
    attempt_count: int = 0
    failure_message: str | None = Field(None, description="the last payment error's message, no card data")


class Observation(BaseModel):
    """One sighting of an invoice: a Stripe event, a reconcile read, the overdue scan, a cancel."""

    model_config = ConfigDict(frozen=True)
    snapshot: InvoiceSnapshot
    stripe_account: str = Field(description="the connected account the invoice is on (event.account)")
    source: Source
    occurred_at: AwareDatetime = Field(description="when it happened, as Stripe says (event.created)")
    stripe_event_id: str | None = None
    stripe_event_type: str | None = None
    cancel_request_id: str | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    transition: Transition
    source: Source
    at: datetime = Field(description="when paylink recorded it")
    stripe_event_id: str | None = None
    event: dict[str, Any] = Field(description="the lifecycle event, JSON form")
    appended: bool = Field(False, description="the event is in the outbox")


class LifecycleRecord(BaseModel):
    """A link's lifecycle, one document per ``payment_link_id``; ``version`` is the store's."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    payment_link_id: str
    account_id: str
    contact_id: str
    stripe_account: str
    invoice_id: str
    correlation_id: str | None = None
    due_date: date | None = None
    status: LinkStatus = LinkStatus.OPEN
    overdue: bool = False
    payment_failures: int = Field(0, description="failed payment attempts noticed")
    history: list[HistoryEntry] = Field(default_factory=list)
    stripe_event_ids: list[str] = Field(default_factory=list, description="Stripe events already applied")
    cancel_request_id: str | None = Field(
        None, description="a cancel about to void the invoice: whoever notices the void credits it to this cancel"
    )
    version: int = 0
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> LifecycleRecord:
        """Reads ``to_document()`` output (extra keys, such as a store's ``_id``, are ignored)."""
        return cls.model_validate(document)

    def to_document(self) -> dict[str, Any]:
        """JSON form; ``created_at``/``updated_at`` fixed-width UTC strings, so they sort as they compare."""
        return self.model_dump(mode="json")

    @field_serializer("created_at", "updated_at", when_used="json")
    def _fixed_width_utc(self, moment: datetime) -> str:
        return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)

    @classmethod
    def for_link(cls, created: PaymentLinkCreated, now: datetime) -> LifecycleRecord:
        """A created link's first record: ``open``, nothing seen yet."""
        return cls(
            payment_link_id=created.payment_link_id,
            account_id=created.account_id,
            contact_id=created.contact_id,
            stripe_account=created.stripe_account,
            invoice_id=created.invoice_id,
            correlation_id=created.correlation_id,
            due_date=created.due_date,
            created_at=now,
            updated_at=now,
        )

    def with_cancel_intent(self, cancel_request_id: str | None, now: datetime) -> LifecycleRecord:
        """The record with a cancel's intent to void (recorded before the void call, so a webhook that
        notices the void first still credits the cancel), or without one (None: the cancel gave up)."""
        return LifecycleRecord.model_validate(
            {**self.model_dump(), "cancel_request_id": cancel_request_id, "updated_at": now}
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def unappended(self) -> list[HistoryEntry]:
        return [entry for entry in self.history if not entry.appended]

    def has_seen(self, stripe_event_id: str | None) -> bool:
        return stripe_event_id is not None and stripe_event_id in self.stripe_event_ids

    def with_transitions(self, observation: Observation, now: datetime) -> LifecycleRecord:
        """The record after ``observation``: new history entries (not yet appended) and the new state."""
        transitions = decide(self, observation, now)
        entries = [_entry(self, observation, transition, now) for transition in transitions]
        seen = self.stripe_event_ids + ([observation.stripe_event_id] if observation.stripe_event_id else [])
        return LifecycleRecord.model_validate(
            {
                **self.model_dump(),
                "status": _status_after(self.status, transitions),
                "overdue": self.overdue or Transition.OVERDUE in transitions,
                "payment_failures": self.payment_failures + transitions.count(Transition.PAYMENT_FAILED),
                "history": [*self.history, *entries][-HISTORY_KEPT:],
                "stripe_event_ids": seen[-STRIPE_EVENTS_KEPT:],
                "updated_at": now,
            }
        )

    def with_appended(self, event_ids: set[str], now: datetime) -> LifecycleRecord:
        """The record with the history entries of ``event_ids`` marked as in the outbox."""
        history = [
            entry.model_copy(update={"appended": True}) if entry.event["event_id"] in event_ids else entry
            for entry in self.history
        ]
        return LifecycleRecord.model_validate({**self.model_dump(), "history": history, "updated_at": now})


def decide(record: LifecycleRecord, observation: Observation, now: datetime) -> list[Transition]:
    """The transitions ``observation`` shows that ``record`` has not made yet, in the order they happen."""
    if record.is_final:
        return []
    invoice, transitions = observation.snapshot, []
    payable = invoice.status in ("open", "uncollectible")
    if payable and observation.stripe_event_type == "invoice.payment_failed" and observation.stripe_event_id:
        transitions.append(Transition.PAYMENT_FAILED)  # a redelivery never gets here: it is has_seen()
    if invoice.status == "uncollectible" and record.status is LinkStatus.OPEN:
        transitions.append(Transition.UNCOLLECTIBLE)
    due = invoice.due_date or record.due_date
    if payable and not record.overdue and due is not None and due < _as_of(observation, now).date():
        transitions.append(Transition.OVERDUE)
    if invoice.status == "paid":
        transitions.append(Transition.PAID)
    elif invoice.status == "void":
        transitions.append(Transition.VOIDED)
    return transitions


def _as_of(observation: Observation, now: datetime) -> datetime:
    """When the observation holds, in UTC: the later of the observer's clock (the overdue scan passes its
    own) and the store's, so a due date counts as passed if either says so."""
    return max(now, observation.occurred_at).astimezone(UTC)


def _status_after(status: LinkStatus, transitions: list[Transition]) -> LinkStatus:
    for transition in transitions:
        if transition is Transition.PAID:
            status = LinkStatus.PAID
        elif transition is Transition.VOIDED:
            status = LinkStatus.VOID
        elif transition is Transition.UNCOLLECTIBLE:
            status = LinkStatus.UNCOLLECTIBLE
    return status


def _entry(record: LifecycleRecord, observation: Observation, transition: Transition, now: datetime) -> HistoryEntry:
    event = lifecycle_event(record, observation, transition, now)
    return HistoryEntry(
        transition=transition,
        source=observation.source,
        at=now,
        stripe_event_id=observation.stripe_event_id,
        event=event.model_dump(mode="json"),
    )


def lifecycle_event(
    record: LifecycleRecord, observation: Observation, transition: Transition, now: datetime
) -> LifecycleEvent:
    """The event of ``transition``; its id depends only on the link and the transition (for a failed
    payment, and the Stripe event that reported it)."""
    invoice = observation.snapshot
    common: dict[str, Any] = {
        "event_id": lifecycle_event_id(record.payment_link_id, transition, observation.stripe_event_id),
        "payment_link_id": record.payment_link_id,
        "correlation_id": record.correlation_id,
        "account_id": record.account_id,
        "contact_id": record.contact_id,
        "stripe_account": record.stripe_account,
        "invoice_id": record.invoice_id,
        "source": observation.source,
    }
    if transition is Transition.PAID:
        paid_at = invoice.paid_at or observation.occurred_at
        return PaymentLinkPaid(
            **common,
            occurred_at=paid_at,
            amount_paid=invoice.amount_paid,
            currency=invoice.currency,
            paid_at=paid_at,
            paid_out_of_band=invoice.paid_out_of_band,
        )
    if transition is Transition.VOIDED:
        voided_at = invoice.voided_at or observation.occurred_at
        # A void a cancel asked for is the cancel's, whoever notices it first (its webhook may come first).
        cancel_request_id = observation.cancel_request_id or record.cancel_request_id
        if cancel_request_id is not None:
            common["source"] = Source.CANCEL
        return PaymentLinkVoided(
            **common, occurred_at=voided_at, voided_at=voided_at, cancel_request_id=cancel_request_id
        )
    if transition is Transition.UNCOLLECTIBLE:
        moment = invoice.marked_uncollectible_at or observation.occurred_at
        return PaymentLinkUncollectible(**common, occurred_at=moment, amount_remaining=invoice.amount_remaining)
    if transition is Transition.OVERDUE:
        due = invoice.due_date or record.due_date
        assert due is not None  # decide() raises overdue only with a due date
        noticed = _as_of(observation, now)
        return PaymentLinkOverdue(
            **common, occurred_at=noticed, due_date=due, amount_remaining=invoice.amount_remaining
        )
    return PaymentLinkPaymentFailed(
        **common,
        occurred_at=observation.occurred_at,
        attempt_count=max(invoice.attempt_count, 1),  # a failed payment is at least the first attempt
        failure_message=invoice.failure_message,
    )
