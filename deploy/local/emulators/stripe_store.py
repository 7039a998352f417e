"""The in-memory store: one :class:`Account` per ``Stripe-Account`` (no header = the platform account),
ids, object shaping, Stripe list pagination and ``expand[]``.

Objects are stored already shaped as Stripe returns them; indexes and bookkeeping live beside them. The
endpoints' logic is in :mod:`stripe_catalog`, :mod:`stripe_customers`, :mod:`stripe_invoices`,
:mod:`stripe_items`.
"""

from __future__ import annotations

import itertools
import json
import random
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .stripe_params import Params, invalid, list_args, no_such

PLATFORM_ACCOUNT = "acct_1PaylinkEmulatorPlatfrm"
_ALNUM = string.ascii_letters + string.digits
Obj = dict[str, Any]


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_1" + "".join(random.choices(_ALNUM, k=length - 1))


class Clock:
    """The emulator's clock: wall time plus an offset moved forward through the control API.

    Module-level because every object module stamps ``created``/``status_transitions`` through
    :func:`now`; one emulator runs per process (the control reset puts the offset back to 0).
    """

    offset = 0


CLOCK = Clock()


def now() -> int:
    return int(time.time()) + CLOCK.offset


def shape(fields: Obj, *, nulls: str = "", zeros: str = "", lists: str = "", falses: str = "") -> Obj:
    """A Stripe object from its specific ``fields`` plus space-separated names of null/0/[]/false fields."""
    obj: Obj = {k: fields[k] for k in ("id", "object") if k in fields}
    obj.update(dict.fromkeys(nulls.split()))
    obj.update(dict.fromkeys(zeros.split(), 0))
    obj.update({k: [] for k in lists.split()})
    obj.update(dict.fromkeys(falses.split(), False))
    obj.update(fields)
    return obj


@dataclass
class Saved:
    """A response saved under an idempotency key."""

    fingerprint: tuple[str, str, str]
    status: int
    body: bytes


@dataclass
class Account:
    id: str
    products: dict[str, Obj] = field(default_factory=dict)
    prices: dict[str, Obj] = field(default_factory=dict)
    customers: dict[str, Obj] = field(default_factory=dict)
    by_email: dict[str, list[str]] = field(default_factory=dict)  # exact email -> customer ids
    by_email_ci: dict[str, list[str]] = field(default_factory=dict)  # lower-cased, for search
    by_phone: dict[str, list[str]] = field(default_factory=dict)
    searchable_at: dict[str, float] = field(default_factory=dict)  # customer id -> monotonic time
    invoices: dict[str, Obj] = field(default_factory=dict)
    invoices_by_customer: dict[str, list[str]] = field(default_factory=dict)
    items: dict[str, Obj] = field(default_factory=dict)
    items_by_invoice: dict[str, list[str]] = field(default_factory=dict)
    line_ids: dict[str, str] = field(default_factory=dict)  # invoice item id -> line item id
    idempotency: dict[str, Saved] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)  # customer id -> creation order
    events: dict[str, Obj] = field(default_factory=dict)  # oldest first
    webhook_endpoints: dict[str, Obj] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)  # endpoint id -> whsec_ (shown once)
    webhook_connect: dict[str, bool] = field(default_factory=dict)  # endpoint id -> connect flag
    payment_intents: dict[str, Obj] = field(default_factory=dict)
    invoice_payments: dict[str, list[Obj]] = field(default_factory=dict)  # invoice id -> its payments
    # (type, object snapshot, previous_attributes) noted by a handler; turned into events by the caller
    # once the handler returned, so a request that fails emits nothing.
    noted: list[tuple[str, Obj, Obj | None]] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def collection(self, object_id: str) -> dict[str, Obj] | None:
        prefix = object_id.split("_", 1)[0]
        return {
            "cus": self.customers,
            "in": self.invoices,
            "ii": self.items,
            "price": self.prices,
            "prod": self.products,
            "pi": self.payment_intents,
            "evt": self.events,
            "we": self.webhook_endpoints,
        }.get(prefix)

    def note(self, event_type: str, obj: Obj, previous: Obj | None = None) -> None:
        """Record that ``event_type`` happened to ``obj`` (snapshotted now, as the event shows it)."""
        self.noted.append((event_type, json.loads(json.dumps(obj)), previous))

    def get(self, kind: str, table: dict[str, Obj], object_id: str, param: str | None = None) -> Obj:
        obj = table.get(object_id)
        if obj is None:
            raise no_such(kind, object_id, param)
        return obj


class Store:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.search_delay_s = 0.0

    def account(self, account_id: str | None) -> Account:
        key = account_id or PLATFORM_ACCOUNT
        acct = self.accounts.get(key)
        if acct is None:
            acct = self.accounts[key] = Account(key)
        return acct


# -- lists and expansion -------------------------------------------------------------------------
def paginate(objs: list[Obj], p: Params, url: str, kind: str) -> Obj:
    """``objs`` oldest first; answers Stripe's list object, newest first, with cursor pagination."""
    limit, after, before = list_args(p)
    seq = objs[::-1]
    ids = [o["id"] for o in seq]
    if after is not None:
        if after not in ids:
            raise no_such(kind, after, "starting_after")
        rest = seq[ids.index(after) + 1 :]
        page, has_more = rest[:limit], len(rest) > limit
    elif before is not None:
        if before not in ids:
            raise no_such(kind, before, "ending_before")
        rest = seq[: ids.index(before)]
        page, has_more = rest[-limit:], len(rest) > limit
    else:
        page, has_more = seq[:limit], len(seq) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def expand(acct: Account, obj: Obj, paths: list[str]) -> Obj:
    """Replace id fields named by ``paths`` (``customer``, ``data.customer``, ``invoice``...) by objects."""
    if not paths:
        return obj
    out = dict(obj)
    for path in paths:
        head, _, rest = path.partition(".")
        if head == "data" and isinstance(out.get("data"), list):
            out["data"] = [expand(acct, item, [rest]) for item in out["data"]]
            continue
        if head == "payments" and out.get("object") == "invoice":  # includable: only when expanded
            data = acct.invoice_payments.get(out["id"], [])[::-1]
            url = f"/v1/invoice_payments?invoice={out['id']}"
            page = {"object": "list", "data": data, "has_more": False, "url": url}
            out["payments"] = expand(acct, page, [rest]) if rest else page
            continue
        value = out.get(head)
        if isinstance(value, dict) and rest:
            out[head] = expand(acct, value, [rest])
            continue
        table = acct.collection(value) if isinstance(value, str) else None
        if table is None or value not in table:
            if value is None and head in out:
                continue
            raise invalid(f"This property cannot be expanded ({path}).", "expand")
        out[head] = expand(acct, table[value], [rest] if rest else [])
    return out
