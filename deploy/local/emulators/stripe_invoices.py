"""Invoices, invoice items and invoice line items (API version 2025-03-31 "basil" and later shapes).

Rules reproduced from Stripe: ``due_date``/``days_until_due`` only with ``collection_method=send_invoice``
(one of them required there, not both), ``due_date`` in the future, a ``send_invoice`` invoice needs a
customer with an email ("Missing email..."), finalise only drafts (amount 0 -> paid at once), void only
open/uncollectible invoices, delete only drafts. Emulator choice: deleting a draft deletes its invoice
items too (so audits see no orphans). Invoice items are in :mod:`stripe_items`.
"""

from __future__ import annotations

from .stripe_events import changes, snapshot
from .stripe_params import (
    Params,
    check_known,
    get_bool,
    get_choice,
    get_currency,
    get_int,
    get_metadata,
    get_str,
    invalid,
    keys,
    merge_metadata,
    state_error,
)
from .stripe_store import Account, Obj, new_id, now, paginate, shape

INLINE_LINES = 10
INVOICE_KEYS = keys(
    "customer collection_method due_date days_until_due auto_advance description metadata currency footer "
    "pending_invoice_items_behavior statement_descriptor"
)
STATUSES = ("draft", "open", "paid", "uncollectible", "void")


# -- invoices ------------------------------------------------------------------------------------
def create_invoice(acct: Account, p: Params) -> Obj:
    check_known(p, INVOICE_KEYS)
    customer_id = get_str(p, "customer", required=True)
    method = get_choice(p, "collection_method", ("charge_automatically", "send_invoice")) or "charge_automatically"
    due_date = get_int(p, "due_date")
    days = get_int(p, "days_until_due", minimum=0)
    auto_advance = get_bool(p, "auto_advance")
    description = get_str(p, "description", max_len=1500)
    metadata = get_metadata(p) or {}
    currency = get_currency(p)
    footer = get_str(p, "footer")
    if get_choice(p, "pending_invoice_items_behavior", ("exclude", "include")) == "include":
        raise invalid(
            "The emulator only supports pending_invoice_items_behavior=exclude.",
            "pending_invoice_items_behavior",
        )
    if due_date is not None and days is not None:
        raise invalid("You may only specify one of these parameters: days_until_due, due_date.", "due_date")
    created = now()
    if method == "send_invoice":
        if due_date is None and days is None:
            raise invalid(
                "Invoices with collection_method=send_invoice require either due_date or days_until_due.",
                "days_until_due",
            )
        if due_date is not None and due_date <= created:
            raise invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", "due_date")
    elif due_date is not None or days is not None:
        param = "due_date" if due_date is not None else "days_until_due"
        raise invalid(f"{param} can only be set when collection_method is send_invoice.", param)
    assert customer_id is not None
    cus = acct.get("customer", acct.customers, customer_id, "customer")
    if method == "send_invoice" and not cus.get("email"):
        raise state_error(
            "Missing email. In order to create invoices that are sent to the customer, the customer must "
            "have a valid email."
        )
    fields: Obj = {
        "id": new_id("in"),
        "object": "invoice",
        "account_country": "US",
        "account_name": f"Emulated {acct.id}",
        "auto_advance": bool(auto_advance),
        "automatic_tax": shape({}, nulls="disabled_reason liability provider status", falses="enabled"),
        "billing_reason": "manual",
        "collection_method": method,
        "created": created,
        "currency": currency or cus["currency"] or "usd",
        "customer": customer_id,
        "customer_address": cus["address"],
        "customer_email": cus["email"],
        "customer_name": cus["name"],
        "customer_phone": cus["phone"],
        "customer_tax_exempt": "none",
        "description": description,
        "due_date": due_date if days is None else created + days * 86400,
        "footer": footer,
        "issuer": {"type": "self"},
        "metadata": metadata,
        "payment_settings": shape({}, nulls="default_mandate payment_method_options payment_method_types"),
        "period_end": created,
        "period_start": created,
        "statement_descriptor": get_str(p, "statement_descriptor"),
        "status": "draft",
        "status_transitions": shape({}, nulls="finalized_at marked_uncollectible_at paid_at voided_at"),
        "webhooks_delivered_at": created,
    }
    inv = shape(
        fields,
        nulls="account_tax_ids application automatically_finalizes_at confirmation_secret custom_fields "
        "customer_account customer_shipping default_payment_method default_source effective_at ending_balance "
        "amount_paid_off_stripe from_invoice hosted_invoice_url invoice_pdf last_finalization_error latest_revision "
        "next_payment_attempt number on_behalf_of parent receipt_number rendering shipping_cost "
        "shipping_details status_details test_clock",
        zeros="amount_due amount_overpaid amount_paid amount_remaining amount_shipping attempt_count "
        "post_payment_credit_notes_amount pre_payment_credit_notes_amount starting_balance subtotal "
        "subtotal_excluding_tax total total_excluding_tax",
        lists="customer_tax_ids default_tax_rates discounts total_discount_amounts total_pretax_credit_amounts "
        "total_taxes",
        falses="attempted livemode",
    )
    acct.invoices[inv["id"]] = inv
    acct.invoices_by_customer.setdefault(customer_id, []).append(inv["id"])
    acct.items_by_invoice[inv["id"]] = []
    acct.note("invoice.created", render_invoice(acct, inv))
    return inv


def _line(acct: Account, item: Obj) -> Obj:
    line_id = acct.line_ids.setdefault(item["id"], new_id("il"))
    details = {
        "invoice_item": item["id"],
        "proration": False,
        "proration_details": {"credited_items": None},
        "subscription": None,
    }
    fields = {
        "id": line_id,
        "object": "line_item",
        "parent": {"type": "invoice_item_details", "subscription_item_details": None, "invoice_item_details": details},
        "subtotal": item["amount"],
        **{
            k: item[k]
            for k in [
                "amount",
                "currency",
                "description",
                "discountable",
                "invoice",
                "metadata",
                "period",
                "pricing",
                "quantity",
            ]
        },
    }
    return shape(fields, lists="discount_amounts discounts pretax_credit_amounts taxes", falses="livemode")


def invoice_lines(acct: Account, invoice_id: str) -> list[Obj]:
    acct.get("invoice", acct.invoices, invoice_id)
    return [_line(acct, acct.items[i]) for i in acct.items_by_invoice.get(invoice_id, [])]


def render_invoice(acct: Account, inv: Obj) -> Obj:
    ids = acct.items_by_invoice.get(inv["id"], [])
    lines = [_line(acct, acct.items[i]) for i in ids[:INLINE_LINES]]
    return {
        **inv,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": len(ids) > INLINE_LINES,
            "total_count": len(ids),
            "url": f"/v1/invoices/{inv['id']}/lines",
        },
    }


def recompute(acct: Account, inv: Obj) -> None:
    total = sum(acct.items[i]["amount"] for i in acct.items_by_invoice[inv["id"]])
    inv.update(subtotal=total, subtotal_excluding_tax=total, total=total, total_excluding_tax=total)
    inv["amount_due"] = inv["amount_remaining"] = max(total, 0)


def draft_invoice(acct: Account, invoice_id: str, param: str | None = None) -> Obj:
    inv = acct.get("invoice", acct.invoices, invoice_id, param)
    if inv["status"] != "draft":
        raise state_error(
            f"You can only add invoice items to draft invoices; invoice {invoice_id} is {inv['status']}.",
            param,
            "invoice_not_editable",
        )
    return inv


def update_invoice(acct: Account, invoice_id: str, p: Params) -> Obj:
    check_known(p, {"auto_advance", "description", "metadata", "footer", "due_date", "days_until_due"})
    metadata = get_metadata(p)
    auto_advance = get_bool(p, "auto_advance")
    description = get_str(p, "description", max_len=1500)
    due_date = get_int(p, "due_date")
    if due_date is not None and due_date <= now():
        raise invalid("Invalid timestamp: must be an integer Unix timestamp in the future.", "due_date")
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] != "draft" and set(p) - {"metadata", "auto_advance", "expand"}:
        raise state_error("Finalized invoices can only have metadata and auto_advance updated.")
    before = snapshot(render_invoice(acct, inv))
    inv["metadata"] = merge_metadata(inv["metadata"], metadata)
    if auto_advance is not None:
        inv["auto_advance"] = auto_advance
    if "description" in p:
        inv["description"] = description or None
    if due_date is not None:
        inv["due_date"] = due_date
    after = render_invoice(acct, inv)
    if after != before:
        acct.note("invoice.updated", after, changes(before, after))
    return inv


def delete_invoice(acct: Account, invoice_id: str) -> Obj:
    inv = acct.get("invoice", acct.invoices, invoice_id)
    if inv["status"] != "draft":
        raise state_error(f"You can only delete draft invoices; this invoice is {inv['status']}. Void it instead.")
    acct.note("invoice.deleted", render_invoice(acct, inv))
    for item_id in acct.items_by_invoice.pop(invoice_id, []):
        del acct.items[item_id]
        acct.line_ids.pop(item_id, None)
    del acct.invoices[invoice_id]
    acct.invoices_by_customer[inv["customer"]].remove(invoice_id)
    return {"id": invoice_id, "object": "invoice", "deleted": True}


def list_invoices(acct: Account, p: Params, url: str) -> Obj:
    check_known(p, {"customer", "status", "collection_method", "limit", "starting_after", "ending_before"})
    customer = get_str(p, "customer")
    status = get_choice(p, "status", STATUSES)
    method = get_str(p, "collection_method")
    ids = acct.invoices_by_customer.get(customer, []) if customer is not None else list(acct.invoices)
    invs = [acct.invoices[i] for i in ids]
    invs = [
        i
        for i in invs
        if (status is None or i["status"] == status) and (method is None or i["collection_method"] == method)
    ]
    page = paginate(invs, p, url, "invoice")
    page["data"] = [render_invoice(acct, i) for i in page["data"]]
    return page
