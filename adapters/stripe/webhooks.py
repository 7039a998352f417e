"""Stripe webhook deliveries: signature verification (stripe-python's) and reading the event.

``StripeWebhooks.read`` accepts a delivery only if its ``Stripe-Signature`` matches one of the
configured signing secrets (several during a rotation) within the tolerance; it never says which
secret matched, nor echoes a secret or the signature. The event's invoice becomes an
``Observation`` through the same mapping ``Billing.retrieve_invoice`` uses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import stripe

from adapters.stripe.invoices import snapshot_from_invoice
from domain.lifecycle import Observation
from domain.lifecycle_events import Source
from domain.notifications import InvalidPayload, InvalidSignature, Notification

# The invoice events that can move a link; every other type is acknowledged and ignored.
LIFECYCLE_EVENT_TYPES = frozenset(
    {"invoice.paid", "invoice.payment_failed", "invoice.marked_uncollectible", "invoice.voided", "invoice.overdue"}
)


class StripeWebhooks:
    def __init__(self, secrets: list[str], tolerance_s: int = 300) -> None:
        if not secrets:
            raise ValueError("no webhook signing secret configured (PAYLINK_STRIPE_WEBHOOK_SECRETS)")
        self._secrets = list(secrets)
        self._tolerance_s = tolerance_s

    def read(self, payload: bytes, signature: str | None) -> Notification:
        """The verified event; ``InvalidSignature`` or ``InvalidPayload`` otherwise."""
        self._verify(payload, signature)
        try:
            event = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            raise InvalidPayload("the body is not JSON") from None
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
        ):
            raise InvalidPayload("the body is not a Stripe event (no id or type)")
        account = event.get("account") if isinstance(event.get("account"), str) else None
        return Notification(event["id"], event["type"], account, _observation(event, account))

    def _verify(self, payload: bytes, signature: str | None) -> None:
        if not signature:
            raise InvalidSignature("no Stripe-Signature header")
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature("the body is not UTF-8, so it cannot carry a valid signature") from None
        for secret in self._secrets:
            try:
                stripe.WebhookSignature.verify_header(payload, signature, secret, self._tolerance_s)
                return
            except stripe.SignatureVerificationError:
                continue
        # Stripe's own messages can quote the header; ours names nothing that was sent.
        raise InvalidSignature("no signature matches a configured secret within the tolerance")


def _observation(event: dict[str, Any], account: str | None) -> Observation | None:
    if event["type"] not in LIFECYCLE_EVENT_TYPES or account is None:
        return None
    data = event.get("data")
    invoice = data.get("object") if isinstance(data, dict) else None
    if not isinstance(invoice, dict) or invoice.get("object", "invoice") != "invoice":
        raise InvalidPayload(f"{event['type']} without an invoice in data.object")
    created = event.get("created")
    occurred_at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else datetime.now(UTC)
    try:
        snapshot = snapshot_from_invoice(invoice)
    except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        raise InvalidPayload(f"{event['type']}: the invoice cannot be read ({type(error).__name__})") from None
    return Observation(
        snapshot=snapshot,
        stripe_account=account,
        source=Source.WEBHOOK,
        occurred_at=occurred_at,
        stripe_event_id=event["id"],
        stripe_event_type=event["type"],
    )
