"""Invoice items: ``POST/GET /v1/invoiceitems``, ``DELETE /v1/invoiceitems/{id}`` and ``add_lines``.

Parameter validation (:func:`parse_item`) runs for every line before anything is looked up, and all
lookups/state checks run before anything is stored, so ``add_lines`` is all-or-nothing.

Emulator choice (documented, stricter than needed for real Stripe to be safe): ``amount`` is the item's
total, so ``quantity`` must then be 1 or omitted; for unit price x quantity use ``pricing[price]`` or
``unit_amount_decimal`` with ``quantity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .stripe_invoices import draft_invoice, recompute
from .stripe_params import (
    Params,
    as_list,
    check_known,
    get_bool,
    get_currency,
    get_decimal,
    get_dict,
    get_int,
    get_metadata,
    get_str,
    invalid,
    keys,
    merge_metadata,
    missing,
    state_error,
)
from .stripe_store import Account, Obj, new_id, now, paginate, shape

MAX_ITEMS = 250
ITEM_KEYS = keys(
    "amount currency customer description discountable invoice metadata period pricing quantity unit_amount_decimal"
)
LINE_KEYS = keys("amount description discountable invoice_item metadata period pricing quantity")


@dataclass
class ItemSpec:
    prefix: str
    price: str | None = None
    quantity: int | None = None
    amount: int | None = None
    unit_decimal: float | None = None
    currency: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    period: Obj | None = None
    discountable: bool | None = None
    invoice_item: str | None = None

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key


def parse_item(p: Params, allowed: frozenset[str], prefix: str = "") -> ItemSpec:
    """Parameter validation only (nothing looked up)."""
    check_known(p, allowed, prefix)
    spec = ItemSpec(prefix)
    pricing = get_dict(p, "pricing")
    if pricing is not None:
        check_known(pricing, {"price"}, spec.name("pricing"))
        spec.price = get_str(pricing, "price", required=True, prefix=spec.name("pricing"))
    spec.quantity = get_int(p, "quantity", minimum=0, prefix=prefix)
    spec.amount = get_int(p, "amount", prefix=prefix)
    spec.unit_decimal = get_decimal(p, "unit_amount_decimal", prefix=prefix)
    spec.currency = get_currency(p, prefix=prefix)
    spec.description = get_str(p, "description", prefix=prefix)
    spec.metadata = get_metadata(p, prefix=prefix) or {}
    spec.invoice_item = get_str(p, "invoice_item", prefix=prefix)
    spec.discountable = get_bool(p, "discountable") if not prefix else None
    period = get_dict(p, "period")
    if period is not None:
        check_known(period, {"start", "end"}, spec.name("period"))
        start = get_int(period, "start", required=True, prefix=spec.name("period"))
        end = get_int(period, "end", required=True, prefix=spec.name("period"))
        spec.period = {"start": start, "end": end}
    given = [
        k
        for k, v in (("pricing", spec.price), ("amount", spec.amount), ("unit_amount_decimal", spec.unit_decimal))
        if v is not None
    ]
    if len(given) > 1:
        raise invalid(f"You may only specify one of these parameters: {', '.join(given)}.", spec.name(given[1]))
    if not given and spec.invoice_item is None:
        raise missing(spec.name("amount"))
    if spec.amount is not None and spec.quantity not in (None, 1):
        raise invalid(
            "When `amount` is given it is the item's total, so `quantity` must be 1 (or omitted); "
            "use `pricing[price]` or `unit_amount_decimal` with `quantity` instead.",
            spec.name("quantity"),
        )
    return spec


def _build_item(acct: Account, spec: ItemSpec, inv: Obj | None, customer_id: str) -> Obj:
    """Lookups and state checks (execution errors), then the invoice item object (not stored)."""
    quantity = 1 if spec.quantity is None else spec.quantity
    price_details = None
    if spec.price is not None:
        price = acct.get("price", acct.prices, spec.price, spec.name("pricing") + "[price]")
        if not price["active"]:
            raise state_error(
                "The price specified is inactive. This field only accepts active prices.",
                spec.name("pricing") + "[price]",
            )
        if price["type"] != "one_time":
            raise state_error(
                "The price specified is set to `type=recurring` but this field only accepts prices with "
                "`type=one_time`.",
                spec.name("pricing") + "[price]",
            )
        currency, unit = price["currency"], float(price["unit_amount_decimal"])
        price_details = {"price": price["id"], "product": price["product"]}
        amount = round(unit * quantity)
    else:
        currency = spec.currency or (inv["currency"] if inv else acct.customers[customer_id]["currency"])
        if currency is None:
            raise missing(spec.name("currency"))
        unit = float(spec.amount) if spec.amount is not None else spec.unit_decimal or 0.0
        amount = spec.amount if spec.amount is not None else round(unit * quantity)
    if inv is not None and currency != inv["currency"]:
        raise state_error(
            f"The currency of the invoice item ({currency}) must match the invoice's currency ({inv['currency']}).",
            spec.name("pricing") + "[price]" if spec.price else spec.name("currency"),
        )
    t = now()
    unit_str = str(int(unit)) if unit == int(unit) else repr(unit)
    fields = {
        "id": new_id("ii"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "date": t,
        "description": spec.description,
        "discountable": amount >= 0 if spec.discountable is None else spec.discountable,
        "invoice": inv["id"] if inv else None,
        "metadata": spec.metadata,
        "net_amount": amount,
        "period": spec.period or {"start": t, "end": t},
        "pricing": {"price_details": price_details, "type": "price_details", "unit_amount_decimal": unit_str},
        "proration_details": {"credited_items": None},
        "quantity": quantity,
        "quantity_decimal": str(quantity),
    }
    return shape(
        fields, nulls="customer_account parent test_clock", lists="discounts tax_rates", falses="livemode proration"
    )


def _attach(acct: Account, item: Obj) -> None:
    acct.items[item["id"]] = item
    if item["invoice"] is not None:
        acct.items_by_invoice[item["invoice"]].append(item["id"])
        recompute(acct, acct.invoices[item["invoice"]])


def _check_room(acct: Account, inv: Obj, extra: int, param: str) -> None:
    if len(acct.items_by_invoice[inv["id"]]) + extra > MAX_ITEMS:
        raise state_error(f"An invoice can have at most {MAX_ITEMS} line items.", param)


def create_item(acct: Account, p: Params) -> Obj:
    spec = parse_item(p, ITEM_KEYS)
    customer_id = get_str(p, "customer")
    invoice_id = get_str(p, "invoice")
    if customer_id is None and invoice_id is None:
        raise missing("customer")
    inv = draft_invoice(acct, invoice_id, "invoice") if invoice_id is not None else None
    if inv is not None:
        _check_room(acct, inv, 1, "invoice")
        if customer_id is not None and customer_id != inv["customer"]:
            raise state_error("The invoice item's customer must be the invoice's customer.", "customer")
        customer_id = inv["customer"]
    assert customer_id is not None
    acct.get("customer", acct.customers, customer_id, "customer")
    item = _build_item(acct, spec, inv, customer_id)
    _attach(acct, item)
    return item


def add_lines(acct: Account, invoice_id: str, p: Params) -> Obj:
    check_known(p, {"lines", "invoice_metadata"})
    if "lines" not in p:
        raise missing("lines")
    lines = as_list(p["lines"], "lines")
    if not lines or not all(isinstance(x, dict) for x in lines):
        raise invalid("Invalid array: lines", "lines")
    specs = [parse_item(line, LINE_KEYS, f"lines[{i}]") for i, line in enumerate(lines)]
    invoice_metadata = get_metadata(p, "invoice_metadata")
    inv = draft_invoice(acct, invoice_id)
    _check_room(acct, inv, len(specs), "lines")
    new: list[Obj] = []
    for spec in specs:
        if spec.invoice_item is not None:
            item = acct.get("invoiceitem", acct.items, spec.invoice_item, spec.name("invoice_item"))
            if item["invoice"] is not None or item["customer"] != inv["customer"]:
                raise state_error(
                    "The invoice item is already on an invoice or belongs to another customer.",
                    spec.name("invoice_item"),
                )
            new.append({**item, "invoice": invoice_id})
        else:
            new.append(_build_item(acct, spec, inv, inv["customer"]))
    for item in new:
        _attach(acct, item)
    inv["metadata"] = merge_metadata(inv["metadata"], invoice_metadata)
    return inv


def delete_item(acct: Account, item_id: str) -> Obj:
    item = acct.get("invoiceitem", acct.items, item_id)
    if item["invoice"] is not None:
        inv = draft_invoice(acct, item["invoice"])
        acct.items_by_invoice[inv["id"]].remove(item_id)
        recompute(acct, inv)
    del acct.items[item_id]
    acct.line_ids.pop(item_id, None)
    return {"id": item_id, "object": "invoiceitem", "deleted": True}


def list_items(acct: Account, p: Params, url: str) -> Obj:
    check_known(p, {"invoice", "customer", "pending", "limit", "starting_after", "ending_before"})
    invoice_id = get_str(p, "invoice")
    customer = get_str(p, "customer")
    pending = get_bool(p, "pending")
    if invoice_id is not None:
        items = [acct.items[i] for i in acct.items_by_invoice.get(invoice_id, [])]
    else:
        items = list(acct.items.values())
    items = [
        i
        for i in items
        if (customer is None or i["customer"] == customer) and (pending is None or (i["invoice"] is None) == pending)
    ]
    return paginate(items, p, url, "invoiceitem")
