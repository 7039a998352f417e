"""A Stripe invoice object (a retrieve's answer or a webhook's ``event.data.object``) as an ``InvoiceSnapshot``.

One mapping for every path that looks at an invoice, robust to missing fields: webhook payloads follow
the endpoint's API version, and fields come and go between versions.

- ``paid_out_of_band``: the invoice's own boolean where the API version still has it (it was removed in
  2025-03-31.basil); otherwise ``amount_paid_off_stripe`` > 0 when it is present (expanded on retrieve).
- ``failure_message``: ``last_finalization_error.message``, else the ``last_payment_error.message`` of
  an expanded PaymentIntent: the invoice's ``payment_intent`` (before basil) or the newest of its
  ``payments`` (basil and later). Only that message is taken, never the payment method or card details,
  and it is cut to ``MESSAGE_LIMIT`` characters.
- Unix seconds become a UTC ``date`` (``due_date``) or an aware ``datetime`` (``status_transitions.*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from domain.lifecycle import InvoiceSnapshot

MESSAGE_LIMIT = 500


def snapshot_from_invoice(invoice: Mapping[str, Any] | stripe.StripeObject) -> InvoiceSnapshot:
    """The snapshot of a Stripe invoice (a dict or a ``StripeObject``); missing fields take defaults."""
    obj = invoice.to_dict() if isinstance(invoice, stripe.StripeObject) else invoice
    transitions = _mapping(obj.get("status_transitions"))
    metadata = _mapping(obj.get("metadata"))
    link = metadata.get("payment_link_id")
    due = _moment(obj.get("due_date"))
    return InvoiceSnapshot(
        invoice_id=str(obj.get("id") or ""),
        status=str(obj.get("status") or ""),
        payment_link_id=str(link) if link else None,
        amount_paid=_int(obj.get("amount_paid")),
        amount_remaining=_int(obj.get("amount_remaining")),
        currency=str(obj.get("currency") or ""),
        due_date=due.date() if due is not None else None,
        paid_at=_moment(transitions.get("paid_at")),
        voided_at=_moment(transitions.get("voided_at")),
        marked_uncollectible_at=_moment(transitions.get("marked_uncollectible_at")),
        paid_out_of_band=_paid_out_of_band(obj),
        attempt_count=_int(obj.get("attempt_count")),
        failure_message=_failure_message(obj),
    )


def _paid_out_of_band(obj: Mapping[str, Any]) -> bool:
    flag = obj.get("paid_out_of_band")
    if isinstance(flag, bool):
        return flag
    return _int(obj.get("amount_paid_off_stripe")) > 0


def _failure_message(obj: Mapping[str, Any]) -> str | None:
    candidates = [
        _mapping(obj.get("last_finalization_error")).get("message"),
        _payment_error(obj.get("payment_intent")),
        *(_payment_error(_mapping(_mapping(p).get("payment")).get("payment_intent")) for p in _payments(obj)),
    ]
    for message in candidates:
        if isinstance(message, str) and message.strip():
            return message.strip()[:MESSAGE_LIMIT]
    return None


def _payments(obj: Mapping[str, Any]) -> list[Any]:
    """The invoice's payments, newest first (Stripe lists them so; ``created`` decides when present)."""
    data = _mapping(obj.get("payments")).get("data")
    if not isinstance(data, list):
        return []
    return sorted(data, key=lambda p: -_int(_mapping(p).get("created")))


def _payment_error(intent: Any) -> Any:
    """An expanded PaymentIntent's ``last_payment_error.message`` (None for an id or nothing)."""
    return _mapping(_mapping(intent).get("last_payment_error")).get("message")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value, UTC)
