"""Lifecycle events: what happened to a payment link after ``PaymentLinkCreated``.

Published on the results topic like the results (keyed by ``contact_id``, CloudEvents headers). Every
one carries the link's identity and ``source``: who noticed the transition (a Stripe ``webhook``,
``paylink reconcile``, the overdue ``scan``, or a ``cancel`` request). Their ``event_id`` is
deterministic (``lifecycle_event_id``), so every path that notices one transition converges on one
event, and the outbox's idempotent append absorbs the repeats.
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Fixed forever: changing it would give a transition already published a second, different event id.
LIFECYCLE_NAMESPACE = uuid.UUID("6f1c5d0e-3b0a-5a4e-9c55-7a1d2b3c4e5f")

_OUTPUT = ConfigDict(frozen=True, extra="ignore")


class Source(StrEnum):
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"
    SCAN = "scan"
    CANCEL = "cancel"


class Transition(StrEnum):
    """A change of a link's lifecycle; ``PAYMENT_FAILED`` may happen once per failed payment attempt."""

    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    OVERDUE = "overdue"
    UNCOLLECTIBLE = "uncollectible"
    VOIDED = "voided"


def lifecycle_event_id(payment_link_id: str, transition: Transition, occurrence: str | None = None) -> str:
    """UUIDv5 of (link, transition): the same for every path that notices the transition.

    A failed payment attempt is its own transition, named by the Stripe event that reported it
    (``payment_failed:evt_…``): Stripe's ``attempt_count`` does not grow on attempts made by the
    customer on the hosted page after the first, so it cannot tell two failures apart. Two failed
    attempts are two events; one ``invoice.payment_failed`` delivered twice is one.
    """
    name = f"{transition.value}:{occurrence}" if transition is Transition.PAYMENT_FAILED else transition.value
    return str(uuid.uuid5(LIFECYCLE_NAMESPACE, f"{payment_link_id}/{name}"))


class _LifecycleEvent(BaseModel):
    model_config = _OUTPUT
    event_id: str
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime = Field(description="when Stripe says it happened (or when paylink noticed)")
    payment_link_id: str
    correlation_id: str | None = Field(None, description="the original request's")
    account_id: str
    contact_id: str
    stripe_account: str
    invoice_id: str
    source: Source


class PaymentLinkPaid(_LifecycleEvent):
    """The invoice is paid in full (final)."""

    event_type: Literal["PaymentLinkPaid"] = "PaymentLinkPaid"
    amount_paid: int = Field(description="minor units")
    currency: str
    paid_at: AwareDatetime
    paid_out_of_band: bool = Field(description="marked paid in Stripe without a payment through it")


class PaymentLinkPaymentFailed(_LifecycleEvent):
    """A payment attempt on the hosted page failed; the link stays payable (not final)."""

    event_type: Literal["PaymentLinkPaymentFailed"] = "PaymentLinkPaymentFailed"
    attempt_count: int = Field(ge=1, description="Stripe's count of payment attempts on the invoice")
    failure_message: str | None = Field(description="Stripe's message, without card data")


class PaymentLinkOverdue(_LifecycleEvent):
    """The due date passed and the invoice is still open or uncollectible; emitted once per link."""

    event_type: Literal["PaymentLinkOverdue"] = "PaymentLinkOverdue"
    due_date: date
    amount_remaining: int = Field(description="minor units")


class PaymentLinkUncollectible(_LifecycleEvent):
    """Marked uncollectible in Stripe; it can still be paid or voided later."""

    event_type: Literal["PaymentLinkUncollectible"] = "PaymentLinkUncollectible"
    amount_remaining: int = Field(description="minor units")


class PaymentLinkVoided(_LifecycleEvent):
    """The invoice was voided (final): by a cancel request, or in Stripe's dashboard."""

    event_type: Literal["PaymentLinkVoided"] = "PaymentLinkVoided"
    voided_at: AwareDatetime
    cancel_request_id: str | None = Field(None, description="null unless voided by a cancel request")


LifecycleEvent = Annotated[
    PaymentLinkPaid | PaymentLinkPaymentFailed | PaymentLinkOverdue | PaymentLinkUncollectible | PaymentLinkVoided,
    Field(discriminator="event_type"),
]
LIFECYCLE_EVENT_TYPES = (
    PaymentLinkPaid,
    PaymentLinkPaymentFailed,
    PaymentLinkOverdue,
    PaymentLinkUncollectible,
    PaymentLinkVoided,
)


def lifecycle_json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the lifecycle events as sent, keyed by ``event_type``."""
    return {kind.__name__: kind.model_json_schema(mode="serialization") for kind in LIFECYCLE_EVENT_TYPES}
