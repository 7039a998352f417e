"""Examples and one-line summaries of every event, for ``paylink schema --asyncapi`` and the docs.

Each example is an event as paylink serialises it; unit tests check that the models accept them, that
``docs/operations.md`` shows exactly these, and that the lifecycle examples' ids follow the id rule.
"""

from __future__ import annotations

from typing import Any

_REQUEST_ID = "4f9c2a77-0a55-4b8e-9a44-2a61f1c0b1d3"
EXAMPLES: dict[str, dict[str, Any]] = {
    "PaymentLinkRequested": {
        "event_id": _REQUEST_ID,
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:15:00Z",
        "correlation_id": "crm-req-8812",
        "account_id": "acc-1042",
        "contact_id": "665f1b2c9d3e4a0012ab34cd",
        "currency": "eur",
        "days_until_due": 14,
        "description": "Spring workshop",
        "note_id": "note-77",
        "metadata": {"deal": "D-2031"},
        "line_items": [
            {"price_id": "price_1PzWorkshop", "quantity": 2},
            {"description": "Travel costs", "amount": 4500, "quantity": 1},
        ],
    },
    "PaymentLinkCreated": {
        "event_id": "b1f0e6a2-3c1d-4e59-8f0a-6d2c9e7b5a10",
        "event_type": "PaymentLinkCreated",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:15:02.184000Z",
        "payment_link_id": _REQUEST_ID,
        "correlation_id": "crm-req-8812",
        "account_id": "acc-1042",
        "contact_id": "665f1b2c9d3e4a0012ab34cd",
        "stripe_account": "acct_1OxTenant1042",
        "customer_id": "cus_Q8aB1cD2eF3gH4",
        "invoice_id": "in_1PzA2bC3dE4fG5hI",
        "invoice_number": "8F3A9C1D-0001",
        "status": "open",
        "amount_due": 24500,
        "currency": "eur",
        "due_date": "2026-03-16",
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1OxTenant1042/test_YWNjdF8xT3hUZW5hbnQ",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1OxTenant1042/test_YWNjdF8xT3hUZW5hbnQ/pdf",
        "short_url": "https://sho.rt/aB3dE9",
        "url": "https://sho.rt/aB3dE9",
        "attempt": 1,
    },
    "PaymentLinkFailed": {
        "event_id": "0c7d5e1f-9b2a-4c3d-8e6f-1a2b3c4d5e6f",
        "event_type": "PaymentLinkFailed",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:16:41.007000Z",
        "payment_link_id": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
        "correlation_id": "crm-req-8813",
        "account_id": "acc-1042",
        "contact_id": "665f1b2c9d3e4a0012ab34cd",
        "reason": "price_not_found",
        "message": "line_items[1]: no such price 'price_1PzRetired' on the connected account",
        "retryable": False,
        "failed_step": "items",
        "compensated": True,
        "attempt": 1,
    },
}
SUMMARIES = {
    "PaymentLinkRequested": "Send this contact a payment link.",
    "PaymentLinkCreated": "The invoice is finalised (not sent) and payable at url.",
    "PaymentLinkFailed": "The request ended without a payable invoice; see reason and message.",
}

# One link's story after PaymentLinkCreated (a failed attempt, overdue, uncollectible, then paid by bank
# transfer), and another link voided by a cancel request. Lifecycle event ids follow
# domain.lifecycle_events.lifecycle_event_id (UUIDv5 of link and transition; checked by a unit test).
_LINK = {
    "payment_link_id": _REQUEST_ID,
    "correlation_id": "crm-req-8812",
    "account_id": "acc-1042",
    "contact_id": "665f1b2c9d3e4a0012ab34cd",
    "stripe_account": "acct_1OxTenant1042",
    "invoice_id": "in_1PzA2bC3dE4fG5hI",
}
EXAMPLES.update(
    {
        "PaymentLinkPaymentFailed": {
            "event_id": "f97be659-e850-55fa-9e0b-8ad59a9b8808",
            "event_type": "PaymentLinkPaymentFailed",
            "schema_version": 1,
            "occurred_at": "2026-03-10T14:22:05Z",
            **_LINK,
            "source": "webhook",
            "attempt_count": 1,
            "failure_message": "Your card has insufficient funds.",
        },
        "PaymentLinkOverdue": {
            "event_id": "bd350b25-b00f-5366-aa78-265f6c3b357d",
            "event_type": "PaymentLinkOverdue",
            "schema_version": 1,
            "occurred_at": "2026-03-17T00:05:12Z",
            **_LINK,
            "source": "scan",
            "due_date": "2026-03-16",
            "amount_remaining": 24500,
        },
        "PaymentLinkUncollectible": {
            "event_id": "f6187079-2d10-5080-85a7-29afd96062f5",
            "event_type": "PaymentLinkUncollectible",
            "schema_version": 1,
            "occurred_at": "2026-04-20T08:00:31Z",
            **_LINK,
            "source": "webhook",
            "amount_remaining": 24500,
        },
        "PaymentLinkPaid": {
            "event_id": "255312df-9a46-554f-8db2-e59c5973eeb1",
            "event_type": "PaymentLinkPaid",
            "schema_version": 1,
            "occurred_at": "2026-04-28T10:41:57Z",
            **_LINK,
            "source": "reconcile",
            "amount_paid": 24500,
            "currency": "eur",
            "paid_at": "2026-04-28T10:41:57Z",
            "paid_out_of_band": True,
        },
        "PaymentLinkVoided": {
            "event_id": "15283056-b9b9-5264-9122-4219a48e1480",
            "event_type": "PaymentLinkVoided",
            "schema_version": 1,
            "occurred_at": "2026-03-05T16:30:00Z",
            "payment_link_id": "7e1d2c3b-4a59-4867-9f8e-1d2c3b4a5968",
            "correlation_id": "crm-req-8820",
            "account_id": "acc-1042",
            "contact_id": "665f1b2c9d3e4a0012ab34cd",
            "stripe_account": "acct_1OxTenant1042",
            "invoice_id": "in_1PzC4dE5fG6hI7jK",
            "source": "cancel",
            "voided_at": "2026-03-05T16:30:00Z",
            "cancel_request_id": "471f4c0d-d589-492d-a377-913ea377971e",
        },
    }
)
SUMMARIES.update(
    {
        "PaymentLinkPaid": "The invoice is paid in full (final); paid_out_of_band when marked paid outside Stripe.",
        "PaymentLinkPaymentFailed": "A payment attempt on the hosted page failed; the link stays payable.",
        "PaymentLinkOverdue": "The due date passed and the invoice is still unpaid; sent once per link.",
        "PaymentLinkUncollectible": "Marked uncollectible in Stripe; it can still be paid or voided later.",
        "PaymentLinkVoided": "The invoice was voided (final): by a cancel request or in Stripe's dashboard.",
    }
)
# A cancel of the voided link above (its success is that PaymentLinkVoided), and one that came too late.
EXAMPLES.update(
    {
        "PaymentLinkCancelRequested": {
            "event_id": "471f4c0d-d589-492d-a377-913ea377971e",
            "event_type": "PaymentLinkCancelRequested",
            "schema_version": 1,
            "occurred_at": "2026-03-05T16:29:58Z",
            "correlation_id": "crm-cancel-8820",
            "account_id": "acc-1042",
            "payment_link_id": "7e1d2c3b-4a59-4867-9f8e-1d2c3b4a5968",
            "contact_id": "665f1b2c9d3e4a0012ab34cd",
            "reason": "wrong amount sent",
        },
        "PaymentLinkCancelRejected": {
            "event_id": "a3c9e2d1-7b6f-4e1a-9d2c-5b8f0e4a7c13",
            "event_type": "PaymentLinkCancelRejected",
            "schema_version": 1,
            "occurred_at": "2026-04-29T08:02:11.512000Z",
            "payment_link_id": _REQUEST_ID,
            "cancel_request_id": "c5d0b7a4-2e9f-4c18-8a3b-6f1e2d9c0b57",
            "correlation_id": "crm-cancel-8841",
            "account_id": "acc-1042",
            "contact_id": "665f1b2c9d3e4a0012ab34cd",
            "reason": "already_paid",
            "message": "invoice in_1PzA2bC3dE4fG5hI is paid",
            "retryable": False,
            "attempt": 1,
        },
    }
)
SUMMARIES.update(
    {
        "PaymentLinkCancelRequested": "Withdraw this payment link: void its invoice (success is PaymentLinkVoided).",
        "PaymentLinkCancelRejected": "The cancel could not be done (paid, void, not created, not found, Stripe down).",
    }
)
REQUESTS = ("PaymentLinkRequested", "PaymentLinkCancelRequested")
RESULTS = ("PaymentLinkCreated", "PaymentLinkFailed", "PaymentLinkCancelRejected")
LIFECYCLE = (
    "PaymentLinkPaid",
    "PaymentLinkPaymentFailed",
    "PaymentLinkOverdue",
    "PaymentLinkUncollectible",
    "PaymentLinkVoided",
)
