"""The Stripe bounds the fake billing enforces, so tests notice any parameter Stripe would reject."""

from __future__ import annotations

from typing import Any

from deploy.local.emulators.stripe_currencies import ISO_4217
from domain.errors import PermanentError, Reason

MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 500
MAX_AMOUNT = 99_999_999
MAX_QUANTITY_SANE = 10_000
MAX_INVOICE_LINES = 250
MAX_IDEMPOTENCY_KEY_CHARS = 255


def invalid(message: str) -> PermanentError:
    return PermanentError(Reason.STRIPE_INVALID_REQUEST, message)


def check_metadata(metadata: dict[str, Any]) -> None:
    if len(metadata) > MAX_METADATA_KEYS:
        raise invalid("metadata: at most 50 keys")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS or "[" in key or "]" in key:
            raise invalid(f"metadata key {key!r} invalid")
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_CHARS:
            raise invalid(f"metadata value of {key!r} invalid")


def check_customer(params: dict[str, Any]) -> None:
    check_metadata(params.get("metadata", {}))
    if len(params.get("name") or "") > 256 or len(params.get("phone") or "") > 20:
        raise invalid("customer name/phone too long")
    if len(params.get("email") or "") > 512:
        raise invalid("customer email too long")
    country = (params.get("address") or {}).get("country")
    if country is not None and (len(country) != 2 or not country.isupper()):
        raise invalid("address.country must be a 2-letter code")


def check_draft(params: dict[str, Any], now_ts: float) -> None:
    check_metadata(params["metadata"])
    currency = params["currency"]
    if currency not in ISO_4217:  # Stripe's form is lower case; the emulator's list is Stripe's stand-in
        raise invalid(f"Invalid currency: {currency}")
    if params["collection_method"] != "send_invoice" or params["auto_advance"] is not False:
        raise invalid("collection_method/auto_advance")
    if not isinstance(params["due_date"], int):
        raise invalid("due_date must be an integer timestamp")
    if params["due_date"] <= now_ts:
        raise PermanentError(
            Reason.INVALID_DUE_DATE, "Invalid timestamp: must be an integer Unix timestamp in the future."
        )
    if len(params.get("description") or "") > 1500:
        raise invalid("description too long")


def check_item(params: dict[str, Any]) -> None:
    if not isinstance(params.get("customer"), str) or not params["customer"]:
        raise invalid("customer: paylink names the invoice's customer on every item")
    line_index = params.get("metadata", {}).get("line_index")
    if not (isinstance(line_index, str) and line_index.isdigit()):
        raise invalid("metadata.line_index: paylink tags every item with its request line")
    quantity = params["quantity"]
    if not isinstance(quantity, int) or quantity < 1:
        raise invalid("quantity must be a positive integer")
    if "price" in params or "unit_amount" in params:
        raise invalid("price/unit_amount are not parameters of invoice items since 2025-03-31")
    if "pricing" in params:
        if set(params) & {"amount", "unit_amount_decimal", "description"}:
            raise invalid("pricing.price excludes amount/unit_amount_decimal")
        return
    unit = params.get("unit_amount_decimal")
    if not (isinstance(unit, str) and unit.isdigit() and int(unit) > 0):
        raise invalid("unit_amount_decimal must be a positive decimal string")
    if int(unit) * quantity > MAX_AMOUNT:
        raise invalid("line total exceeds 99,999,999")
    if not params.get("currency") or not params.get("description"):
        raise invalid("amount lines need currency and description")
