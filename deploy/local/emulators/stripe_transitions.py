"""Invoice state transitions and the events they emit: finalize, pay, void, mark uncollectible, and a
customer paying (or failing to pay) on the hosted page (control API only: Stripe's API cannot express it).

Status rules, as Stripe's: finalize only drafts (amount 0 -> paid at once); ``pay`` on a draft finalizes it
first, refuses paid and void invoices; void only open or uncollectible invoices; mark uncollectible only
open ones; an uncollectible invoice can still be paid or voided. Every transition notes its specific event
(``invoice.finalized``, ``invoice.paid``, ``invoice.payment_failed``, ``invoice.voided``,
``invoice.marked_uncollectible``) and ``invoice.updated`` with ``previous_attributes``.

Payments (API 2025-03-31 "basil" and later): the invoice has no ``paid_out_of_band`` or ``payment_intent``
field any more. ``paid_out_of_band=true`` sets ``amount_paid`` and ``amount_paid_off_stripe``. A hosted-page
attempt creates (once per invoice) a PaymentIntent ``pi_…`` and an invoice payment in the invoice's
includable ``payments`` list (``expand[]=payments.data.payment.payment_intent``). A failed attempt leaves its
message where Stripe does, in the PaymentIntent's ``last_payment_error`` (``GET /v1/payment_intents/{id}``),
and emits ``payment_intent.payment_failed`` whose payload carries that PaymentIntent, so a webhook consumer
gets the message without a request.
"""

from __future__ import annotations

import random
import string

from .stripe_events import changes, snapshot
from .stripe_invoices import render_invoice
from .stripe_params import Params, check_known, get_bool, get_str, keys, no_such, state_error
from .stripe_store import Account, Obj, new_id, now, shape

PAY_KEYS = keys("forgive mandate off_session paid_out_of_band payment_method source")
NO_PAYMENT_METHOD = (
    "This customer has no attached payment source or default payment method. Please consider adding a default "
    "payment method. For more information, visit "
    "https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority."
)


def _token() -> str:
    return "test_" + "".join(random.choices(string.ascii_letters + string.digits, k=72))


def _announce(acct: Account, inv: Obj, before: Obj, *event_types: str) -> None:
    after = render_invoice(acct, inv)
    for event_type in event_types:
        acct.note(event_type, after)
    acct.note("invoice.updated", after, changes(before, after))


def _finalize(acct: Account, inv: Obj) -> None:
    before = snapshot(render_invoice(acct, inv))
    cus = acct.customers.get(inv["customer"], {})
    t = now()
    if cus:
        inv["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
        cus["next_invoice_sequence"] += 1
        for key in ("email", "name", "phone", "address"):
            inv[f"customer_{key}"] = cus[key]
    token = _token()
    inv.update(
        status="open",
        effective_at=t,
        hosted_invoice_url=f"https://invoice.stripe.com/i/{acct.id}/{token}?s=ap",
        invoice_pdf=f"https://pay.stripe.com/invoice/{acct.id}/{token}/pdf?s=ap",
        ending_balance=0,
    )
    inv["status_transitions"]["finalized_at"] = t
    if inv["amount_due"] == 0:
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = t
        _announce(acct, inv, before, "invoice.finalized", "invoice.paid")
    else:
        _announce(acct, inv, before, "invoice.finalized")


def finalize_invoice(acct: Account, invoice_id: str, p: Params) -> Obj:
    check_known(p, {"auto_advance"})
    auto_advance = get_bool(p, "auto_advance")
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] != "draft":
        raise state_error("This invoice is already finalized, you can't re-finalize a non-draft invoice.")
    if auto_advance is not None:
        inv["auto_advance"] = auto_advance
    _finalize(acct, inv)
    return inv


def void_invoice(acct: Account, invoice_id: str, p: Params) -> Obj:
    check_known(p, set())
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] not in ("open", "uncollectible"):
        raise state_error(f"You can only void open or uncollectible invoices; this invoice is {inv['status']}.")
    before = snapshot(render_invoice(acct, inv))
    inv["status"] = "void"
    inv["amount_remaining"] = 0
    inv["status_transitions"]["voided_at"] = now()
    _announce(acct, inv, before, "invoice.voided")
    return inv


def mark_uncollectible(acct: Account, invoice_id: str, p: Params) -> Obj:
    check_known(p, set())
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] != "open":
        raise state_error(f"You can only mark open invoices as uncollectible; this invoice is {inv['status']}.")
    before = snapshot(render_invoice(acct, inv))
    inv["status"] = "uncollectible"
    inv["status_transitions"]["marked_uncollectible_at"] = now()
    _announce(acct, inv, before, "invoice.marked_uncollectible")
    return inv


def _payable(acct: Account, invoice_id: str) -> Obj:
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] == "void":
        raise state_error("Voided invoices cannot be paid.")
    if inv["status"] == "paid":
        raise state_error("Invoice is already paid")
    return inv


def _mark_paid(acct: Account, inv: Obj, before: Obj, off_stripe: bool) -> None:
    paid = inv["amount_remaining"]
    inv.update(status="paid", amount_paid=inv["amount_paid"] + paid, amount_remaining=0)
    if off_stripe:
        inv["amount_paid_off_stripe"] = (inv.get("amount_paid_off_stripe") or 0) + paid
    inv["status_transitions"]["paid_at"] = now()
    _announce(acct, inv, before, "invoice.paid", *(() if off_stripe else ("invoice.payment_succeeded",)))


def pay_invoice(acct: Account, invoice_id: str, p: Params) -> Obj:
    """``POST /v1/invoices/{id}/pay``: out of band, or the error Stripe gives without a payment method."""
    check_known(p, PAY_KEYS)
    out_of_band = get_bool(p, "paid_out_of_band")
    get_bool(p, "forgive")
    get_bool(p, "off_session")
    payment_method = get_str(p, "payment_method")
    source = get_str(p, "source")
    inv = _payable(acct, invoice_id)
    if payment_method is not None:  # the emulator holds no payment methods: none can belong to the customer
        raise no_such("PaymentMethod", payment_method, "payment_method")
    if source is not None:
        raise no_such("source", source, "source")
    nothing_due = inv["status"] == "draft" and inv["amount_due"] == 0
    if not out_of_band and not nothing_due:  # refused before anything changes: the draft stays a draft
        raise state_error(NO_PAYMENT_METHOD)
    if inv["status"] == "draft":
        _finalize(acct, inv)
        if inv["status"] == "paid":  # nothing was due
            return inv
    _mark_paid(acct, inv, snapshot(render_invoice(acct, inv)), off_stripe=True)
    return inv


# -- the hosted page (control API) ---------------------------------------------------------------
def _payment_intent(acct: Account, inv: Obj) -> Obj:
    payments = acct.invoice_payments.setdefault(inv["id"], [])
    if payments:
        pi: Obj = acct.payment_intents[payments[0]["payment"]["payment_intent"]]
        return pi
    created = now()
    pi = shape(
        {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": inv["amount_remaining"],
            "automatic_payment_methods": None,
            "capture_method": "automatic",
            "client_secret": None,
            "confirmation_method": "automatic",
            "created": created,
            "currency": inv["currency"],
            "customer": inv["customer"],
            "description": "Payment for Invoice",
            "metadata": {},
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
        },
        nulls="application application_fee_amount canceled_at cancellation_reason last_payment_error latest_charge "
        "next_action on_behalf_of payment_method receipt_email review setup_future_usage shipping source "
        "statement_descriptor statement_descriptor_suffix transfer_data transfer_group",
        zeros="amount_capturable amount_received",
        falses="livemode",
    )
    pi["client_secret"] = f"{pi['id']}_secret_{_token()[5:29]}"
    acct.payment_intents[pi["id"]] = pi
    payments.append(
        {
            "id": new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": inv["amount_remaining"],
            "created": created,
            "currency": inv["currency"],
            "invoice": inv["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
    )
    return pi


def hosted_payment(acct: Account, invoice_id: str, succeed: bool, code: str, decline_code: str, message: str) -> Obj:
    """A customer paying on the hosted invoice page: the invoice is paid, or the attempt fails and it stays open."""
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] not in ("open", "uncollectible"):
        raise state_error(f"This invoice is {inv['status']}: the hosted page takes no payment.")
    before = snapshot(render_invoice(acct, inv))
    pi = _payment_intent(acct, inv)
    payment = acct.invoice_payments[inv["id"]][0]
    inv["attempt_count"] += 1
    inv["attempted"] = True
    pm = {"id": new_id("pm"), "object": "payment_method", "type": "card"}
    charge = new_id("ch")
    pi.update(payment_method=pm["id"], latest_charge=charge)
    if succeed:
        pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
        payment.update(status="paid", amount_paid=pi["amount"])
        payment["status_transitions"]["paid_at"] = now()
        acct.note("payment_intent.succeeded", pi)
        _mark_paid(acct, inv, before, off_stripe=False)
    else:
        pi["last_payment_error"] = {
            "advice_code": None,
            "charge": charge,
            "code": code,
            "decline_code": decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "message": message,
            "param": None,
            "payment_method": pm,
            "type": "card_error",
        }
        acct.note("payment_intent.payment_failed", pi)
        _announce(acct, inv, before, "invoice.payment_failed")
    return inv
