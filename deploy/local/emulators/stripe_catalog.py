"""Products and prices (``POST/GET /v1/products``, ``POST/GET /v1/prices``; prices may create their
product inline with ``product_data``)."""

from __future__ import annotations

from .stripe_params import (
    Params,
    StripeError,
    check_known,
    get_bool,
    get_currency,
    get_dict,
    get_int,
    get_metadata,
    get_str,
    invalid,
    keys,
    missing,
)
from .stripe_store import Account, Obj, new_id, now, shape

PRODUCT_KEYS = keys("name description metadata active id unit_label url")
PRICE_KEYS = keys(
    "currency product product_data unit_amount unit_amount_decimal metadata nickname active lookup_key recurring "
    "tax_behavior"
)


def _product(acct: Account, p: Params, prefix: str = "") -> Obj:
    check_known(p, PRODUCT_KEYS, prefix)
    name = get_str(p, "name", required=True, prefix=prefix)
    metadata = get_metadata(p, prefix=prefix) or {}
    product_id = get_str(p, "id", prefix=prefix) or new_id("prod", 14)
    if product_id in acct.products:
        raise StripeError(400, f"Product already exists: {product_id}", code="resource_already_exists", param="id")
    t = now()
    fields = {
        "id": product_id,
        "object": "product",
        "active": get_bool(p, "active") is not False,
        "created": t,
        "description": get_str(p, "description", prefix=prefix),
        "metadata": metadata,
        "name": name,
        "type": "service",
        "unit_label": get_str(p, "unit_label", prefix=prefix),
        "updated": t,
        "url": get_str(p, "url", prefix=prefix),
    }
    obj = shape(
        fields,
        nulls="default_price package_dimensions shippable statement_descriptor tax_code",
        lists="images marketing_features",
        falses="livemode",
    )
    acct.products[product_id] = obj
    return obj


def create_product(acct: Account, p: Params) -> Obj:
    return _product(acct, p)


def create_price(acct: Account, p: Params) -> Obj:
    check_known(p, PRICE_KEYS)
    currency = get_currency(p, required=True)
    unit_amount = get_int(p, "unit_amount", minimum=0)
    decimal = get_str(p, "unit_amount_decimal")
    if unit_amount is None and decimal is None:
        raise missing("unit_amount")
    if unit_amount is not None and decimal is not None:
        raise invalid("You may only specify one of these parameters: unit_amount, unit_amount_decimal.")
    metadata = get_metadata(p) or {}
    recurring = get_dict(p, "recurring")
    if recurring is not None:
        check_known(recurring, keys("interval interval_count usage_type"), "recurring")
        if recurring.get("interval") not in ("day", "week", "month", "year"):
            raise invalid("Invalid recurring[interval]: must be day, week, month or year", "recurring[interval]")
    product_id = get_str(p, "product")
    product_data = get_dict(p, "product_data")
    if (product_id is None) == (product_data is None):
        raise invalid("You must specify either `product` or `product_data` (and not both).", "product")
    if product_id is not None:
        product = acct.get("product", acct.products, product_id, "product")
    else:
        product = _product(acct, product_data or {}, "product_data")
    amount = unit_amount if unit_amount is not None else round(float(decimal or 0))
    fields = {
        "id": new_id("price"),
        "object": "price",
        "active": get_bool(p, "active") is not False,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency,
        "lookup_key": get_str(p, "lookup_key"),
        "metadata": metadata,
        "nickname": get_str(p, "nickname"),
        "product": product["id"],
        "tax_behavior": get_str(p, "tax_behavior") or "unspecified",
        "type": "one_time" if recurring is None else "recurring",
        "unit_amount": amount,
        "unit_amount_decimal": decimal if decimal is not None else str(amount),
    }
    if recurring is not None:
        fields["recurring"] = {
            "interval": recurring["interval"],
            "interval_count": int(recurring.get("interval_count", 1)),
            "meter": None,
            "usage_type": recurring.get("usage_type", "licensed"),
        }
    obj = shape(fields, nulls="custom_unit_amount recurring tiers_mode transform_quantity", falses="livemode")
    acct.prices[obj["id"]] = obj
    return obj
