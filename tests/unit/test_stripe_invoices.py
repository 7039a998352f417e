"""``snapshot_from_invoice`` (adapters/stripe/invoices.py): a Stripe invoice, as a retrieve or a webhook
payload shows it in any API version, becomes the snapshot the lifecycle reads."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import stripe

from adapters.stripe.invoices import MESSAGE_LIMIT, snapshot_from_invoice
from domain.lifecycle import InvoiceSnapshot

PAID_AT = 1_895_097_600  # 2030-01-20T00:00:00Z


def invoice(**changes: Any) -> dict[str, Any]:
    """A paid invoice as Stripe renders it (2026 API: no ``paid_out_of_band``, no ``payment_intent``)."""
    return {
        "id": "in_1",
        "object": "invoice",
        "status": "paid",
        "metadata": {"payment_link_id": "link-1", "account_id": "acc_1"},
        "amount_due": 8000,
        "amount_paid": 8000,
        "amount_remaining": 0,
        "currency": "usd",
        "due_date": PAID_AT + 3600,
        "attempt_count": 2,
        "status_transitions": {
            "finalized_at": PAID_AT - 86_400,
            "paid_at": PAID_AT,
            "voided_at": None,
            "marked_uncollectible_at": PAID_AT - 60,
        },
        "last_finalization_error": None,
        **changes,
    }


def test_a_paid_invoice() -> None:
    assert snapshot_from_invoice(invoice()) == InvoiceSnapshot(
        invoice_id="in_1",
        status="paid",
        payment_link_id="link-1",
        amount_paid=8000,
        amount_remaining=0,
        currency="usd",
        due_date=date(2030, 1, 20),
        paid_at=datetime(2030, 1, 20, tzinfo=UTC),
        voided_at=None,
        marked_uncollectible_at=datetime(2030, 1, 19, 23, 59, tzinfo=UTC),
        paid_out_of_band=False,
        attempt_count=2,
        failure_message=None,
    )


def test_a_stripe_object_maps_like_its_dict() -> None:
    obj = stripe.Invoice.construct_from(invoice(), "sk_test")

    assert snapshot_from_invoice(obj) == snapshot_from_invoice(invoice())


def test_missing_and_odd_fields_take_defaults() -> None:
    snapshot = snapshot_from_invoice({"id": "in_2", "metadata": {"payment_link_id": ""}, "due_date": True})

    assert snapshot == InvoiceSnapshot(invoice_id="in_2", status="")
    assert snapshot_from_invoice({}).invoice_id == ""
    odd = snapshot_from_invoice(invoice(status_transitions=None, amount_paid="8000", attempt_count=None, metadata=None))
    assert (odd.paid_at, odd.amount_paid, odd.attempt_count, odd.payment_link_id) == (None, 0, 0, None)


def test_paid_out_of_band_from_the_old_flag_or_the_amount_paid_off_stripe() -> None:
    assert snapshot_from_invoice(invoice(paid_out_of_band=True)).paid_out_of_band
    assert not snapshot_from_invoice(invoice(paid_out_of_band=False, amount_paid_off_stripe=8000)).paid_out_of_band
    assert snapshot_from_invoice(invoice(amount_paid_off_stripe=8000)).paid_out_of_band
    assert not snapshot_from_invoice(invoice(amount_paid_off_stripe=0)).paid_out_of_band


def test_the_failure_message_without_card_data() -> None:
    intent = {
        "id": "pi_1",
        "last_payment_error": {
            "message": "  Your card was declined.  ",
            "decline_code": "generic_decline",
            "payment_method": {"card": {"last4": "4242", "exp_month": 12}},
        },
    }
    old_api = snapshot_from_invoice(invoice(status="open", payment_intent=intent))
    new_api = snapshot_from_invoice(
        invoice(
            status="open",
            payments={
                "data": [
                    {"created": 1, "payment": {"payment_intent": {"last_payment_error": {"message": "Old failure"}}}},
                    {"created": 2, "payment": {"payment_intent": intent}},
                    {"created": 3, "payment": {"payment_intent": "pi_not_expanded"}},
                ]
            },
        )
    )

    assert old_api.failure_message == new_api.failure_message == "Your card was declined."
    assert "4242" not in old_api.model_dump_json() and "generic_decline" not in old_api.model_dump_json()


def test_the_finalization_error_comes_first_and_messages_are_cut() -> None:
    long = "x" * (MESSAGE_LIMIT + 50)
    both = invoice(
        last_finalization_error={"message": "Tax location invalid"},
        payment_intent={"last_payment_error": {"message": "declined"}},
    )

    assert snapshot_from_invoice(both).failure_message == "Tax location invalid"
    assert (
        snapshot_from_invoice(invoice(last_finalization_error={"message": long})).failure_message == "x" * MESSAGE_LIMIT
    )
    assert snapshot_from_invoice(invoice(last_finalization_error={"message": "  "})).failure_message is None
    assert snapshot_from_invoice(invoice(payment_intent="pi_1", payments={"data": "?"})).failure_message is None
