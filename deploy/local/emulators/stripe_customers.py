"""Customers: create/retrieve/update/delete, list (``email=`` is exact and uses an index) and search.

Search (``GET /v1/customers/search``) uses lower-cased email and exact phone indexes for ``email:"…"`` /
``phone:"…"`` clauses and filters the rest; like Stripe's, it can be made eventually consistent with the
config key ``search_visibility_delay_ms`` (new customers stay invisible to search for that long).
"""

from __future__ import annotations

import random
import re
import string
import time

from .stripe_params import Params, as_list, check_known, get_metadata, get_str, invalid, keys, merge_metadata
from .stripe_query import Query, clause_matches
from .stripe_store import Account, Obj, Store, new_id, now, shape

CUSTOMER_KEYS = keys("address description email metadata name phone preferred_locales tax_exempt invoice_prefix")
ADDRESS_KEYS = keys("city country line1 line2 postal_code state")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Stripe's limits (its API reference): a longer value is refused, never truncated.
MAX_LENGTHS = {"description": 512, "name": 256, "phone": 20, "email": 512}


def _address(p: Params, key: str) -> Obj | bool | None:
    """The address object, ``None`` to unset (``address=``), ``False`` when absent."""
    if key not in p:
        return False
    value = p[key]
    if value == "":
        return None
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {key}", key)
    check_known(value, ADDRESS_KEYS, key)
    return {k: get_str(value, k, prefix=key, max_len=200) for k in sorted(ADDRESS_KEYS)}


def _customer_fields(p: Params) -> Obj:
    check_known(p, CUSTOMER_KEYS)
    fields: Obj = {}
    for key, max_len in MAX_LENGTHS.items():
        if key in p:
            fields[key] = get_str(p, key, max_len=max_len) or None
    if fields.get("email") and not EMAIL_RE.fullmatch(fields["email"]):
        raise invalid(f"Invalid email address: {fields['email']}", "email", "email_invalid")
    address = _address(p, "address")
    if address is not False:
        fields["address"] = address
    if "preferred_locales" in p:
        fields["preferred_locales"] = as_list(p["preferred_locales"], "preferred_locales")
    if "tax_exempt" in p:
        fields["tax_exempt"] = get_str(p, "tax_exempt")
    return fields


def _index(acct: Account, cus: Obj, add: bool) -> None:
    for table, value in (
        (acct.by_email, cus.get("email")),
        (acct.by_email_ci, (cus.get("email") or "").lower() or None),
        (acct.by_phone, cus.get("phone")),
    ):
        if not value:
            continue
        ids = table.setdefault(value, [])
        if add:
            ids.append(cus["id"])
        else:
            ids.remove(cus["id"])
            if not ids:
                del table[value]


def create_customer(store: Store, acct: Account, p: Params) -> Obj:
    fields = _customer_fields(p)
    metadata = get_metadata(p) or {}
    prefix = get_str(p, "invoice_prefix") or "".join(random.choices(string.ascii_uppercase + string.digits, k=8))
    base = {
        "id": new_id("cus", 14),
        "object": "customer",
        "created": now(),
        "invoice_prefix": prefix,
        "invoice_settings": shape({}, nulls="custom_fields default_payment_method footer rendering_options"),
        "metadata": metadata,
        "next_invoice_sequence": 1,
        "tax_exempt": "none",
    }
    cus = shape(
        base,
        nulls="address currency default_source description discount email name phone shipping test_clock",
        zeros="balance",
        lists="preferred_locales",
        falses="delinquent livemode",
    )
    cus.update(fields)
    acct.customers[cus["id"]] = cus
    acct.seq[cus["id"]] = next(acct.counter)
    acct.searchable_at[cus["id"]] = time.monotonic() + store.search_delay_s
    _index(acct, cus, add=True)
    return cus


def update_customer(acct: Account, customer_id: str, p: Params) -> Obj:
    fields = _customer_fields(p)
    metadata = get_metadata(p)
    cus = acct.get("customer", acct.customers, customer_id)
    _index(acct, cus, add=False)
    cus.update(fields)
    cus["metadata"] = merge_metadata(cus["metadata"], metadata)
    _index(acct, cus, add=True)
    return cus


def delete_customer(acct: Account, customer_id: str) -> Obj:
    cus = acct.get("customer", acct.customers, customer_id)
    _index(acct, cus, add=False)
    del acct.customers[customer_id]
    acct.searchable_at.pop(customer_id, None)
    acct.seq.pop(customer_id, None)
    return {"id": customer_id, "object": "customer", "deleted": True}


def search_customers(acct: Account, query: Query) -> list[Obj]:
    """Newest first. ``email``/``phone`` equality clauses use the indexes; the rest filter."""
    indexed = [
        c
        for c in query.clauses
        if c.op == ":" and not c.negated and c.field in ("email", "phone") and c.meta_key is None
    ]
    if (query.combinator == "OR" and len(indexed) == len(query.clauses)) or (query.combinator == "AND" and indexed):
        ids: set[str] = set()
        for clause in indexed if query.combinator == "OR" else indexed[:1]:
            table = acct.by_email_ci if clause.field == "email" else acct.by_phone
            key = str(clause.value).lower() if clause.field == "email" else str(clause.value)
            ids.update(table.get(key, ()))
        candidates = [acct.customers[i] for i in ids]
    else:
        candidates = list(acct.customers.values())
    combine = any if query.combinator == "OR" else all
    visible_before = time.monotonic()
    hits = [
        c
        for c in candidates
        if acct.searchable_at.get(c["id"], 0.0) <= visible_before
        and combine(clause_matches(clause, c) for clause in query.clauses)
    ]
    hits.sort(key=lambda c: acct.seq[c["id"]], reverse=True)
    return hits
