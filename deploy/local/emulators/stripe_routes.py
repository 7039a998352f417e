"""Routing table of the Stripe emulator: path -> method -> handler (synchronous, on one account)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import stripe_catalog as catalog
from . import stripe_customers as customers
from . import stripe_events as events
from . import stripe_invoices as inv
from . import stripe_items as items
from . import stripe_store as st
from . import stripe_transitions as tr
from . import stripe_webhooks as hooks
from .stripe_params import Params, check_known, get_int, get_str, invalid, keys
from .stripe_query import QueryError, parse_query

LIST_KEYS = keys("limit starting_after ending_before")


@dataclass
class Ctx:
    store: st.Store
    acct: st.Account
    params: Params
    ids: dict[str, str]
    path: str


Handler = Callable[[Ctx], Any]


def _retrieve(kind: str, table: Callable[[st.Account], dict[str, st.Obj]]) -> Handler:
    def handler(c: Ctx) -> st.Obj:
        check_known(c.params, set())
        return c.acct.get(kind, table(c.acct), c.ids["id"])

    return handler


def _list_all(table: Callable[[st.Account], dict[str, st.Obj]], kind: str, filters: tuple[str, ...] = ()) -> Handler:
    def handler(c: Ctx) -> st.Obj:
        check_known(c.params, LIST_KEYS | set(filters))
        wanted = {f: get_str(c.params, f) for f in filters if f in c.params}

        def shown(value: Any) -> str:
            return str(value).lower() if isinstance(value, bool) else str(value)

        objs = [o for o in table(c.acct).values() if all(shown(o.get(f)) == v for f, v in wanted.items())]
        return st.paginate(objs, c.params, c.path, kind)

    return handler


def _list_customers(c: Ctx) -> st.Obj:
    check_known(c.params, LIST_KEYS | {"email"})
    email = get_str(c.params, "email", max_len=512)
    ids = c.acct.by_email.get(email, []) if email is not None else list(c.acct.customers)
    return st.paginate([c.acct.customers[i] for i in ids], c.params, c.path, "customer")


def _search_customers(c: Ctx) -> st.Obj:
    check_known(c.params, keys("query limit page"))
    query = get_str(c.params, "query", required=True)
    limit = get_int(c.params, "limit") or 10
    page = get_str(c.params, "page") or "0"
    if not 1 <= limit <= 100:
        raise invalid("Invalid limit: must be between 1 and 100", "limit")
    if not page.isdigit():
        raise invalid(f"Invalid page: {page}", "page")
    try:
        parsed = parse_query(query or "")
    except QueryError as exc:
        raise invalid(f"Invalid query: {exc}.", "query") from None
    hits = customers.search_customers(c.acct, parsed)
    start = int(page)
    more = len(hits) > start + limit
    return {
        "object": "search_result",
        "data": hits[start : start + limit],
        "has_more": more,
        "next_page": str(start + limit) if more else None,
        "url": c.path,
    }


def _render(fn: Callable[[st.Account, str, Params], st.Obj]) -> Handler:
    return lambda c: inv.render_invoice(c.acct, fn(c.acct, c.ids["id"], c.params))


def _lines_page(c: Ctx) -> st.Obj:
    lines = inv.invoice_lines(c.acct, c.ids["id"])
    check_known(c.params, LIST_KEYS)
    return st.paginate(lines[::-1], c.params, c.path, "line item")  # listed in insertion order


ROUTES: dict[str, dict[str, Handler]] = {
    "/v1/products": {
        "POST": lambda c: catalog.create_product(c.acct, c.params),
        "GET": _list_all(lambda a: a.products, "product", ("active",)),
    },
    "/v1/products/{id}": {"GET": _retrieve("product", lambda a: a.products)},
    "/v1/prices": {
        "POST": lambda c: catalog.create_price(c.acct, c.params),
        "GET": _list_all(lambda a: a.prices, "price", ("product", "active", "currency")),
    },
    "/v1/prices/{id}": {"GET": _retrieve("price", lambda a: a.prices)},
    "/v1/customers": {"POST": lambda c: customers.create_customer(c.store, c.acct, c.params), "GET": _list_customers},
    "/v1/customers/search": {"GET": _search_customers},
    "/v1/customers/{id}": {
        "GET": _retrieve("customer", lambda a: a.customers),
        "POST": lambda c: customers.update_customer(c.acct, c.ids["id"], c.params),
        "DELETE": lambda c: customers.delete_customer(c.acct, c.ids["id"]),
    },
    "/v1/invoices": {
        "POST": lambda c: inv.render_invoice(c.acct, inv.create_invoice(c.acct, c.params)),
        "GET": lambda c: inv.list_invoices(c.acct, c.params, c.path),
    },
    "/v1/invoices/{id}": {
        "GET": lambda c: inv.render_invoice(c.acct, _retrieve("invoice", lambda a: a.invoices)(c)),
        "POST": _render(inv.update_invoice),
        "DELETE": lambda c: inv.delete_invoice(c.acct, c.ids["id"]),
    },
    "/v1/invoices/{id}/finalize": {"POST": _render(tr.finalize_invoice)},
    "/v1/invoices/{id}/void": {"POST": _render(tr.void_invoice)},
    "/v1/invoices/{id}/pay": {"POST": _render(tr.pay_invoice)},
    "/v1/invoices/{id}/mark_uncollectible": {"POST": _render(tr.mark_uncollectible)},
    "/v1/invoices/{id}/add_lines": {"POST": _render(items.add_lines)},
    "/v1/invoices/{id}/lines": {"GET": _lines_page},
    "/v1/invoiceitems": {
        "POST": lambda c: items.create_item(c.acct, c.params),
        "GET": lambda c: items.list_items(c.acct, c.params, c.path),
    },
    "/v1/invoiceitems/{id}": {
        "GET": _retrieve("invoiceitem", lambda a: a.items),
        "DELETE": lambda c: items.delete_item(c.acct, c.ids["id"]),
    },
    "/v1/payment_intents/{id}": {"GET": _retrieve("payment_intent", lambda a: a.payment_intents)},
    "/v1/events": {"GET": lambda c: events.list_events(c.acct, c.params, c.path)},
    "/v1/events/{id}": {"GET": _retrieve("event", lambda a: a.events)},
    "/v1/webhook_endpoints": {
        "POST": lambda c: hooks.create_endpoint(c.acct, c.params),
        "GET": _list_all(lambda a: a.webhook_endpoints, "webhook_endpoint"),
    },
    "/v1/webhook_endpoints/{id}": {
        "GET": _retrieve("webhook_endpoint", lambda a: a.webhook_endpoints),
        "POST": lambda c: hooks.update_endpoint(c.acct, c.ids["id"], c.params),
        "DELETE": lambda c: hooks.delete_endpoint(c.acct, c.ids["id"]),
    },
}
