"""The cancel's contract: ``PaymentLinkCancelRequested`` in (requests topic, told apart by ``event_type``),
``PaymentLinkCancelRejected`` out when the link cannot be cancelled; success is the lifecycle's
``PaymentLinkVoided(source=cancel, cancel_request_id)`` (``domain.lifecycle_events``).

Validated as strictly as ``PaymentLinkRequested`` (strict types, no unknown fields, UUID ids in canonical
form, identifiers 1..200 characters, ``reason`` at most 500 characters).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from domain.errors import excerpt
from domain.events import _INPUT, _OUTPUT, Identifier

MAX_CANCEL_REASON_CHARS = 500


class PaymentLinkCancelRequested(BaseModel):
    """Input, schema_version 1: "withdraw this payment link". Keyed by ``contact_id`` like the link's own
    request, so it is ordered after it on the same partition."""

    model_config = _INPUT
    event_id: str = Field(description="UUID; the cancel's idempotency key")
    event_type: Literal["PaymentLinkCancelRequested"]
    schema_version: Literal[1]
    occurred_at: AwareDatetime
    correlation_id: Identifier | None = None
    account_id: Identifier
    payment_link_id: str = Field(description="UUID: the event_id of the link's PaymentLinkRequested")
    contact_id: Identifier
    reason: Annotated[str, StringConstraints(max_length=MAX_CANCEL_REASON_CHARS)] | None = Field(
        None, description="why, in the CRM user's words (kept on the cancel's record, not sent to Stripe)"
    )

    @field_validator("event_id", "payment_link_id")
    @classmethod
    def _ids_are_uuids(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise PydanticCustomError("uuid_format", "must be a UUID, got {value}", {"value": excerpt(value)}) from None


class CancelRejection(StrEnum):
    """``PaymentLinkCancelRejected.reason``."""

    PAYMENT_LINK_NOT_FOUND = "payment_link_not_found"  # unknown, or another account's link
    ALREADY_PAID = "already_paid"
    ALREADY_VOID = "already_void"  # voided before (in Stripe's dashboard, or by another cancel)
    NOT_CREATED = "not_created"  # the link's request failed: nothing to cancel
    STRIPE_UNAVAILABLE = "stripe_unavailable"  # retries ran out (retryable), or Stripe refused the void
    INVALID_EVENT = "invalid_event"  # the cancel itself did not validate


class PaymentLinkCancelRejected(BaseModel):
    """Output: the cancel could not be done (see ``reason``); the link is as it was. ``retryable``: a
    ``paylink replay --event-id <cancel_request_id>`` may still void it."""

    model_config = _OUTPUT
    event_id: str
    event_type: Literal["PaymentLinkCancelRejected"] = "PaymentLinkCancelRejected"
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime
    payment_link_id: str
    cancel_request_id: str = Field(description="the cancel's event_id")
    correlation_id: str | None = None
    account_id: str | None = Field(description="as the cancel gave it")
    contact_id: str | None = Field(description="as the cancel gave it")
    reason: CancelRejection
    message: str
    retryable: bool
    attempt: int = Field(ge=1, description="1 for the first run, +1 for every replay")


def cancel_json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the cancel's events (input as validated, output as sent)."""
    return {
        "PaymentLinkCancelRequested": PaymentLinkCancelRequested.model_json_schema(mode="validation"),
        "PaymentLinkCancelRejected": PaymentLinkCancelRejected.model_json_schema(mode="serialization"),
    }
