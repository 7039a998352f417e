"""The Stripe parameters the domain pins: customers from contacts, search queries, drafts, items, keys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.billing import DraftInvoice, InvoiceItem, NewCustomer, customer_search_query
from domain.crm import Contact
from domain.keys import InvoiceKeys, customer_key


def contact(**document: Any) -> Contact:
    return Contact.from_document({"_id": "c1", "account_id": "a1", **document})


def test_contact_from_document_maps_the_contract_shape() -> None:
    mapped = contact(
        first_name=" Ada ",
        last_name="Lovelace",
        email="",
        address={"city": "London", "country": "gb", "unit": None},
        stripe_customers={"acct_1": "cus_1", "acct_2": 5},
    )
    assert mapped.display_name == "Ada Lovelace"
    assert mapped.email is None
    assert mapped.address is not None and mapped.address.city == "London"
    assert mapped.stripe_customers == {"acct_1": "cus_1"}
    assert contact(address={"city": " "}).address is None
    assert contact(address="not a map").address is None


def test_new_customer_sends_only_present_fields_with_stripe_address_names() -> None:
    params = NewCustomer.from_contact(
        contact(
            name="Ada",
            phone="+44 20 7946 0000",
            address={
                "street": "12 Main St",
                "unit": "Flat 3",
                "city": "London",
                "state_province": "LDN",
                "postal_code": "N1",
                "country": "gb",
            },
        )
    ).stripe_params()
    assert params == {
        "name": "Ada",
        "phone": "+44 20 7946 0000",
        "address": {
            "line1": "12 Main St",
            "line2": "Flat 3",
            "city": "London",
            "state": "LDN",
            "postal_code": "N1",
            "country": "GB",
        },
        "metadata": {"account_id": "a1", "contact_id": "c1"},
    }


def test_new_customer_leaves_out_what_stripe_would_reject() -> None:
    params = NewCustomer.from_contact(
        contact(name="n" * 300, email="e" * 600, phone="+1" * 20, address={"country": "Canada"})
    ).stripe_params()
    assert len(params["name"]) == 256
    assert "email" not in params and "phone" not in params and "address" not in params


@pytest.mark.parametrize(
    ("email", "phone", "query"),
    [
        ("a@b.c", None, 'email:"a@b.c"'),
        (None, "+1555", 'phone:"+1555"'),
        ("a@b.c", "+1555", 'email:"a@b.c" OR phone:"+1555"'),
        ('we"ird\\@b.c', None, 'email:"we\\"ird\\\\@b.c"'),
        (None, None, None),
    ],
)
def test_customer_search_query_escapes_quotes_and_backslashes(
    email: str | None, phone: str | None, query: str | None
) -> None:
    assert customer_search_query(email, phone) == query


def test_draft_params() -> None:
    draft = DraftInvoice("cus_1", "usd", 1_900_000_000, "memo", {"payment_link_id": "p"})
    assert draft.stripe_params() == {
        "customer": "cus_1",
        "currency": "usd",
        "collection_method": "send_invoice",
        "due_date": 1_900_000_000,
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "description": "memo",
        "metadata": {"payment_link_id": "p"},
    }


def test_item_params_for_prices_and_amounts() -> None:
    priced = InvoiceItem(index=0, quantity=2, currency="usd", customer_id="cus_1", idempotency_key="k", price_id="p")
    assert priced.stripe_params("in_1") == {
        "invoice": "in_1",
        "customer": "cus_1",
        "quantity": 2,
        "pricing": {"price": "p"},
        "metadata": {"line_index": "0"},
    }
    free = InvoiceItem(
        index=1,
        quantity=3,
        currency="usd",
        customer_id="cus_1",
        idempotency_key="k",
        description="Fee",
        unit_amount=999,
    )
    assert free.stripe_params("in_1") == {
        "invoice": "in_1",
        "customer": "cus_1",
        "quantity": 3,
        "currency": "usd",
        "description": "Fee",
        "unit_amount_decimal": "999",
        "metadata": {"line_index": "1"},
    }


@given(st.uuids(), st.integers(0, 5), st.integers(1, 250))
def test_invoice_keys_are_stable_distinct_and_short(request_id: Any, restarts: int, items: int) -> None:
    keys = InvoiceKeys(str(request_id), restarts)
    again = InvoiceKeys(str(request_id), restarts)
    every = [keys.draft(), keys.finalise(), keys.void(), *map(keys.item, range(items)), keys.items(0, items)]
    assert every == [
        again.draft(),
        again.finalise(),
        again.void(),
        *map(again.item, range(items)),
        again.items(0, items),
    ]
    assert len(set(every)) == len(every)
    assert all(len(key) < 255 for key in every)
    restarted = InvoiceKeys(str(request_id), restarts + 1)
    assert not set(every) & {restarted.draft(), restarted.finalise(), restarted.item(0)}


def test_customer_key_converges_per_contact_and_parameters() -> None:
    params = {"email": "a@b.c"}
    assert customer_key("acct_1", "a", "c", params) == customer_key("acct_1", "a", "c", dict(params))
    others = {
        customer_key("acct_2", "a", "c", params),
        customer_key("acct_1", "b", "c", params),
        customer_key("acct_1", "a", "d", params),
        customer_key("acct_1", "a", "c", {"email": "x@b.c"}),
    }
    assert customer_key("acct_1", "a", "c", params) not in others and len(others) == 4
    assert len(customer_key("acct_1", "a" * 500, "c" * 500, params)) < 255
