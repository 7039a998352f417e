"""The Stripe emulator, driven through stripe-python 16's async ``StripeClient`` like paylink drives Stripe.

Every test resets the emulator first and works on its own connected account.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe

KEY = "sk_test_paylink_local_emulator"
# stripe-python's HTTPXClient posts bytes through httpx's deprecated `data=`: ignored for every test in
# pyproject.toml's filterwarnings.


@pytest.fixture
async def control(stripe_api_base: str) -> AsyncIterator[httpx.AsyncClient]:
    """Control-API client; the emulator is reset before the test and after it (no faults leak out)."""
    async with httpx.AsyncClient(base_url=stripe_api_base, timeout=10) as http:
        (await http.post("/_emulator/reset")).raise_for_status()
        yield http
        (await http.post("/_emulator/reset")).raise_for_status()


@pytest.fixture
async def client(stripe_api_base: str, control: httpx.AsyncClient) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.HTTPXClient()
    yield stripe.StripeClient(KEY, http_client=http_client, base_addresses={"api": stripe_api_base})
    await close(http_client)


async def close(http_client: stripe.HTTPXClient) -> None:
    await http_client.close_async()  # type: ignore[no-untyped-call]


def replayed(obj: Any) -> str | None:
    """The ``Idempotent-Replayed`` header of the response that produced ``obj``."""
    return obj.last_response.headers.get("idempotent-replayed") if obj.last_response else None


@pytest.fixture
def acct() -> str:
    return f"acct_1{uuid.uuid4().hex[:16]}"


def opts(account: str, key: str | None = None) -> Any:
    options: dict[str, Any] = {"stripe_account": account}
    if key is not None:
        options["idempotency_key"] = key
    return options


async def objects(control: httpx.AsyncClient, account: str | None, kind: str) -> list[dict[str, Any]]:
    params = {"type": kind} | ({"account": account} if account else {})
    response = await control.get("/_emulator/objects", params=params)
    response.raise_for_status()
    return list(response.json()["data"])


async def add_fault(control: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    response = await control.post("/_emulator/faults", json=spec)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def stats(control: httpx.AsyncClient) -> dict[str, int]:
    return dict((await control.get("/_emulator/stats")).json()["requests"])


async def draft(client: stripe.StripeClient, account: str, **extra: Any) -> tuple[str, str]:
    """A customer and a draft ``send_invoice`` invoice on ``account``: (customer id, invoice id)."""
    customer = await client.v1.customers.create_async(
        params={"email": "ada@example.com", "name": "Ada"}, options=opts(account)
    )
    params: Any = {"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30} | extra
    invoice = await client.v1.invoices.create_async(params=params, options=opts(account))
    return customer.id, invoice.id


async def price(client: stripe.StripeClient, account: str, amount: int = 1500, currency: str = "usd") -> str:
    created = await client.v1.prices.create_async(
        params={"product_data": {"name": "Consulting"}, "unit_amount": amount, "currency": currency},
        options=opts(account),
    )
    return created.id


# -- the invoice flow ------------------------------------------------------------------------------
async def test_invoice_flow_on_a_connected_account(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    customer = await client.v1.customers.create_async(
        params={
            "email": "ada@example.com",
            "phone": "+15550100",
            "name": "Ada Lovelace",
            "address": {"line1": "12 St James's Square", "city": "London", "country": "GB"},
            "metadata": {"contact_id": "c-1"},
        },
        options=opts(acct, "customer-1"),
    )
    assert customer.id.startswith("cus_") and customer.object == "customer" and customer.livemode is False
    assert customer.address is not None and customer.address.city == "London"
    assert customer.metadata is not None and customer.metadata.to_dict() == {"contact_id": "c-1"}
    price_id = await price(client, acct, 1500)
    due = int(time.time()) + 7 * 86400
    invoice = await client.v1.invoices.create_async(
        params={
            "customer": customer.id,
            "collection_method": "send_invoice",
            "due_date": due,
            "auto_advance": False,
            "description": "Consulting, March",
            "metadata": {"payment_link_id": "pl-1"},
            "currency": "usd",
        },
        options=opts(acct, "draft-1"),
    )
    assert invoice.id.startswith("in_") and invoice.status == "draft" and invoice.due_date == due
    assert invoice.hosted_invoice_url is None and invoice.number is None and invoice.auto_advance is False

    by_price = await client.v1.invoice_items.create_async(
        params={"invoice": invoice.id, "customer": customer.id, "pricing": {"price": price_id}, "quantity": 3},
        options=opts(acct, "item-0"),
    )
    by_amount = await client.v1.invoice_items.create_async(
        params={
            "invoice": invoice.id,
            "customer": customer.id,
            "amount": 250,
            "currency": "usd",
            "description": "Travel",
        },
        options=opts(acct, "item-1"),
    )
    by_decimal = await client.v1.invoice_items.create_async(
        params={"invoice": invoice.id, "unit_amount_decimal": Decimal("99.5"), "quantity": 2, "description": "Pens"},
        options=opts(acct, "item-2"),
    )
    assert by_price.object == "invoiceitem" and by_price.amount == 4500 and by_price.quantity == 3
    assert by_price.pricing is not None and by_price.pricing.price_details is not None
    assert by_price.pricing.price_details.price == price_id
    assert by_amount.amount == 250 and by_amount.description == "Travel"
    assert by_decimal.amount == 199 and by_decimal.customer == customer.id

    final = await client.v1.invoices.finalize_invoice_async(
        invoice.id, params={"auto_advance": False}, options=opts(acct, "finalize-1")
    )
    assert final.status == "open" and final.amount_due == 4500 + 250 + 199 == final.total
    assert final.number is not None and final.number.endswith("-0001")
    assert final.hosted_invoice_url is not None
    assert final.hosted_invoice_url.startswith(f"https://invoice.stripe.com/i/{acct}/test_")
    assert final.invoice_pdf is not None and final.invoice_pdf.startswith(f"https://pay.stripe.com/invoice/{acct}/")
    assert "/pdf" in final.invoice_pdf
    assert [line.amount for line in final.lines.data] == [4500, 250, 199]

    fetched = await client.v1.invoices.retrieve_async(invoice.id, options=opts(acct))
    assert fetched.status == "open" and fetched.hosted_invoice_url == final.hosted_invoice_url
    invoices = await objects(control, acct, "invoice")
    assert [(i["id"], i["status"]) for i in invoices] == [(invoice.id, "open")]
    assert len(await objects(control, acct, "invoiceitem")) == 3
    listed = await client.v1.invoice_items.list_async(params={"invoice": invoice.id}, options=opts(acct))
    assert {i.id for i in listed.data} == {by_price.id, by_amount.id, by_decimal.id}


async def test_add_lines_adds_all_lines_or_none(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    _, invoice_id = await draft(client, acct)
    price_id = await price(client, acct, 1000)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.invoices.add_lines_async(
            invoice_id,
            params={"lines": [{"pricing": {"price": price_id}, "quantity": 2}, {"pricing": {"price": "price_nope"}}]},
            options=opts(acct),
        )
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert missing.value.param == "lines[1][pricing][price]"
    assert await objects(control, acct, "invoiceitem") == []

    lines: Any = {"lines": [{"pricing": {"price": price_id}, "quantity": 2}, {"amount": 300, "description": "Setup"}]}
    first = await client.v1.invoices.add_lines_async(invoice_id, params=lines, options=opts(acct, "lines-1"))
    again = await client.v1.invoices.add_lines_async(invoice_id, params=lines, options=opts(acct, "lines-1"))
    assert first.amount_due == again.amount_due == 2300
    assert replayed(again) == "true"
    assert len(await objects(control, acct, "invoiceitem")) == 2


async def test_only_drafts_take_items_and_can_be_deleted_only_open_invoices_can_be_voided(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    customer_id, to_delete = await draft(client, acct)
    await client.v1.invoice_items.create_async(
        params={"invoice": to_delete, "amount": 100, "currency": "usd"}, options=opts(acct)
    )
    with pytest.raises(stripe.InvalidRequestError) as not_open:
        await client.v1.invoices.void_invoice_async(to_delete, options=opts(acct))
    assert not_open.value.http_status == 400
    deleted = await client.v1.invoices.delete_async(to_delete, options=opts(acct))
    assert deleted.deleted is True
    assert await objects(control, acct, "invoice") == [] and await objects(control, acct, "invoiceitem") == []

    finalized = (
        await client.v1.invoices.create_async(
            params={"customer": customer_id, "collection_method": "send_invoice", "days_until_due": 10},
            options=opts(acct),
        )
    ).id
    await client.v1.invoice_items.create_async(
        params={"invoice": finalized, "amount": 100, "currency": "usd"}, options=opts(acct)
    )
    await client.v1.invoices.finalize_invoice_async(finalized, options=opts(acct))
    with pytest.raises(stripe.InvalidRequestError) as item_on_open:
        await client.v1.invoice_items.create_async(
            params={"invoice": finalized, "amount": 100, "currency": "usd"}, options=opts(acct)
        )
    assert item_on_open.value.http_status == 400 and item_on_open.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError) as delete_open:
        await client.v1.invoices.delete_async(finalized, options=opts(acct))
    assert delete_open.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.finalize_invoice_async(finalized, options=opts(acct))
    voided = await client.v1.invoices.void_invoice_async(finalized, options=opts(acct))
    assert voided.status == "void"
    assert [i["status"] for i in await objects(control, acct, "invoice")] == ["void"]


async def test_invoice_rules_stripe_enforces(client: stripe.StripeClient, acct: str) -> None:
    phone_only = await client.v1.customers.create_async(params={"phone": "+15550111"}, options=opts(acct))
    with pytest.raises(stripe.InvalidRequestError) as no_email:
        await client.v1.invoices.create_async(
            params={"customer": phone_only.id, "collection_method": "send_invoice", "days_until_due": 5},
            options=opts(acct),
        )
    assert "Missing email" in no_email.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as both:
        await draft(client, acct, due_date=int(time.time()) + 99999)
    assert both.value.param == "due_date"
    with pytest.raises(stripe.InvalidRequestError) as neither:
        await client.v1.invoices.create_async(
            params={"customer": phone_only.id, "collection_method": "send_invoice"}, options=opts(acct)
        )
    assert neither.value.http_status == 400


async def test_past_due_date_is_rejected_like_stripe(client: stripe.StripeClient, acct: str) -> None:
    customer = await client.v1.customers.create_async(params={"email": "a@example.com"}, options=opts(acct))
    with pytest.raises(stripe.InvalidRequestError) as error:
        await client.v1.invoices.create_async(
            params={"customer": customer.id, "collection_method": "send_invoice", "due_date": int(time.time()) - 60},
            options=opts(acct),
        )
    assert error.value.http_status == 400 and error.value.param == "due_date"
    assert error.value.user_message == ("Invalid timestamp: must be an integer Unix timestamp in the future.")
    assert error.value.error is not None and error.value.error.type == "invalid_request_error"


async def test_unknown_ids_and_missing_params(client: stripe.StripeClient, acct: str) -> None:
    _, invoice_id = await draft(client, acct)
    with pytest.raises(stripe.InvalidRequestError) as no_price:
        await client.v1.invoice_items.create_async(
            params={"invoice": invoice_id, "pricing": {"price": "price_x"}, "quantity": 1}, options=opts(acct)
        )
    assert (no_price.value.http_status, no_price.value.code, no_price.value.param) == (
        404,
        "resource_missing",
        "pricing[price]",
    )
    assert no_price.value.user_message == "No such price: 'price_x'"
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        await client.v1.customers.retrieve_async("cus_missing", options=opts(acct))
    assert no_customer.value.http_status == 404 and no_customer.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.invoices.create_async(params={"auto_advance": False}, options=opts(acct))
    assert missing.value.code == "parameter_missing" and missing.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await client.v1.customers.create_async(params={"emial": "typo@example.com"}, options=opts(acct))  # type: ignore[arg-type]
    assert unknown.value.code == "parameter_unknown" and unknown.value.param == "emial"


async def test_stripe_limits_metadata_and_items_per_invoice(client: stripe.StripeClient, acct: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as metadata:
        await client.v1.customers.create_async(
            params={"metadata": {f"k{i}": "v" for i in range(51)}}, options=opts(acct)
        )
    assert metadata.value.param == "metadata"
    _, invoice_id = await draft(client, acct)
    lines: Any = [{"amount": 1, "description": f"line {i}"} for i in range(250)]
    full = await client.v1.invoices.add_lines_async(invoice_id, params={"lines": lines}, options=opts(acct))
    assert full.amount_due == 250 and full.lines["total_count"] == 250 and full.lines.has_more is True
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        await client.v1.invoice_items.create_async(
            params={"invoice": invoice_id, "amount": 1, "currency": "usd"}, options=opts(acct)
        )
    assert too_many.value.http_status == 400


# -- customers: list, search, accounts ---------------------------------------------------------------
async def test_customer_search_by_email_or_phone_with_escaped_quotes(client: stripe.StripeClient, acct: str) -> None:
    odd = await client.v1.customers.create_async(
        params={"email": "o.brien@example.com", "name": 'Pat "The Rock" O\\Brien'}, options=opts(acct)
    )
    phone = await client.v1.customers.create_async(params={"phone": "+15550123"}, options=opts(acct))
    await client.v1.customers.create_async(params={"email": "other@example.com"}, options=opts(acct))

    async def search(query: str) -> set[str]:
        found = await client.v1.customers.search_async(params={"query": query}, options=opts(acct))
        assert found["object"] == "search_result"
        return {c.id for c in found.data}

    assert await search('email:"O.Brien@example.com"') == {odd.id}
    assert await search('email:"o.brien@example.com" OR phone:"+15550123"') == {odd.id, phone.id}
    assert await search('email:"o.brien@example.com" AND phone:"+15550123"') == set()
    assert await search('name:"Pat \\"The Rock\\" O\\\\Brien"') == {odd.id}
    assert await search('email:"nobody@example.com"') == set()
    for malformed in ('email:"unterminated', "email:bare", 'email:"a" OR phone:"b" AND name:"c"', 'email:"\\x"'):
        with pytest.raises(stripe.InvalidRequestError) as bad:
            await search(malformed)
        assert bad.value.http_status == 400 and bad.value.param == "query", malformed


async def test_list_by_email_is_exact_and_search_can_lag(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    (await control.post("/_emulator/config", json={"search_visibility_delay_ms": 60_000})).raise_for_status()
    created = await client.v1.customers.create_async(params={"email": "new@example.com"}, options=opts(acct))
    listed = await client.v1.customers.list_async(params={"email": "new@example.com"}, options=opts(acct))
    assert [c.id for c in listed.data] == [created.id] and listed["object"] == "list" and listed.has_more is False
    assert (await client.v1.customers.list_async(params={"email": "NEW@example.com"}, options=opts(acct))).data == []
    searched = await client.v1.customers.search_async(params={"query": 'email:"new@example.com"'}, options=opts(acct))
    assert searched.data == []


async def test_objects_are_scoped_to_their_connected_account(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    other = f"acct_1{uuid.uuid4().hex[:16]}"
    customer = await client.v1.customers.create_async(params={"email": "iso@example.com"}, options=opts(acct))
    with pytest.raises(stripe.InvalidRequestError) as invisible:
        await client.v1.customers.retrieve_async(customer.id, options=opts(other))
    assert invisible.value.http_status == 404
    assert (await client.v1.customers.list_async(params={"email": "iso@example.com"}, options=opts(other))).data == []
    platform = await client.v1.customers.list_async(params={"email": "iso@example.com"})
    assert platform.data == []
    assert [c["id"] for c in await objects(control, acct, "customer")] == [customer.id]
    assert await objects(control, other, "customer") == [] and await objects(control, None, "customer") == []


# -- idempotency -------------------------------------------------------------------------------------
async def test_idempotent_replay_and_conflict(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    params: Any = {"email": "idem@example.com", "metadata": {"n": "1"}}
    first = await client.v1.customers.create_async(params=params, options=opts(acct, "same-key"))
    replay = await client.v1.customers.create_async(params=params, options=opts(acct, "same-key"))
    assert replay.id == first.id
    assert replayed(replay) == "true"
    assert replayed(first) is None
    with pytest.raises(stripe.IdempotencyError) as conflict:
        await client.v1.customers.create_async(params={"email": "changed@example.com"}, options=opts(acct, "same-key"))
    assert conflict.value.http_status == 400
    elsewhere = await client.v1.customers.create_async(params=params, options=opts(f"{acct}x", "same-key"))
    assert elsewhere.id != first.id
    assert len(await objects(control, acct, "customer")) == 1


async def test_execution_errors_are_saved_but_validation_errors_are_not(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    params: Any = {"product": "prod_chosen", "unit_amount": 500, "currency": "usd"}
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.prices.create_async(params=params, options=opts(acct, "price-key"))
    await client.v1.products.create_async(params={"id": "prod_chosen", "name": "Chosen"}, options=opts(acct))
    with pytest.raises(stripe.InvalidRequestError) as replayed:
        await client.v1.prices.create_async(params=params, options=opts(acct, "price-key"))
    assert replayed.value.http_status == 404
    assert replayed.value.headers is not None and replayed.value.headers.get("idempotent-replayed") == "true"
    assert (
        await client.v1.prices.create_async(params=params, options=opts(acct, "price-key-2"))
    ).product == "prod_chosen"

    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.customers.create_async(params={"email": "not-an-email"}, options=opts(acct, "cus-key"))
    fixed = await client.v1.customers.create_async(params={"email": "ok@example.com"}, options=opts(acct, "cus-key"))
    assert fixed.email == "ok@example.com"


# -- auth and accounts -------------------------------------------------------------------------------
async def test_only_test_secret_keys_are_accepted(stripe_api_base: str, control: httpx.AsyncClient) -> None:
    http_client = stripe.HTTPXClient()
    try:
        live = stripe.StripeClient(
            "sk_live_123456789", http_client=http_client, base_addresses={"api": stripe_api_base}
        )
        with pytest.raises(stripe.AuthenticationError) as error:
            await live.v1.customers.list_async()
        assert error.value.http_status == 401
    finally:
        await close(http_client)
    anonymous = await control.get("/v1/customers")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in anonymous.json()["error"]["message"]


async def test_revoked_account_gets_a_permission_error(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    (await control.post("/_emulator/config", json={"revoked_accounts": [acct]})).raise_for_status()
    with pytest.raises(stripe.PermissionError) as error:
        await client.v1.customers.create_async(params={"email": "a@example.com"}, options=opts(acct, "k"))
    assert error.value.http_status == 403
    assert error.value.error is not None and error.value.error.code == "account_invalid"
    assert f"does not have access to account '{acct}'" in error.value.user_message
    await client.v1.customers.create_async(params={"email": "a@example.com"}, options=opts(f"{acct}x"))
    (await control.post("/_emulator/config", json={"revoked_accounts": []})).raise_for_status()
    await client.v1.customers.create_async(params={"email": "a@example.com"}, options=opts(acct, "k"))


# -- faults ------------------------------------------------------------------------------------------
async def test_500_fault_surfaces_as_api_error_and_executes_nothing(
    stripe_api_base: str, client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    await add_fault(control, method="POST", path="/v1/customers", status=500, count=1)
    with pytest.raises(stripe.APIError) as error:
        await client.v1.customers.create_async(params={"email": "a@example.com"}, options=opts(acct, "k"))
    assert error.value.http_status == 500
    assert error.value.error is not None and error.value.error.type == "api_error"
    assert error.value.headers is not None and error.value.headers.get("stripe-should-retry") == "true"
    assert await objects(control, acct, "customer") == []
    await add_fault(control, method="POST", path="/v1/customers", status=503, count=1)
    http_client = stripe.HTTPXClient()
    retrying = stripe.StripeClient(
        KEY, http_client=http_client, base_addresses={"api": stripe_api_base}, max_network_retries=2
    )
    try:
        created = await retrying.v1.customers.create_async(params={"email": "a@example.com"}, options=opts(acct, "k"))
    finally:
        await close(http_client)
    assert [c["id"] for c in await objects(control, acct, "customer")] == [created.id]
    counted = await stats(control)
    assert counted["POST /v1/customers 500"] == 1 and counted["POST /v1/customers 503"] == 1
    assert counted["POST /v1/customers 200"] == 1


async def test_429_and_409_faults(stripe_api_base: str, control: httpx.AsyncClient, acct: str) -> None:
    http_client = stripe.HTTPXClient()
    retrying = stripe.StripeClient(
        KEY, http_client=http_client, base_addresses={"api": stripe_api_base}, max_network_retries=2
    )
    try:
        await add_fault(control, path="/v1/customers", status=429, count=1)
        with pytest.raises(stripe.RateLimitError) as limited:
            await retrying.v1.customers.list_async(options=opts(acct))
        assert limited.value.http_status == 429
        assert limited.value.error is not None and limited.value.error.code == "rate_limit"
        await add_fault(control, path="/v1/customers", status=409, count=1)
        listed = await retrying.v1.customers.list_async(options=opts(acct))
        assert listed.data == []
    finally:
        await close(http_client)
    counted = await stats(control)
    assert counted["GET /v1/customers 429"] == 1, "429 is not retried: Stripe sends no Stripe-Should-Retry"
    assert counted["GET /v1/customers 409"] == 1 and counted["GET /v1/customers 200"] == 1
    faults = (await control.get("/_emulator/faults")).json()["data"]
    assert [(f["status"], f["fired"], f["remaining"]) for f in faults] == [(429, 1, 0), (409, 1, 0)]


async def test_connection_reset_fault(client: stripe.StripeClient, control: httpx.AsyncClient, acct: str) -> None:
    await add_fault(control, method="POST", path="/v1/invoices", status=0)
    customer = await client.v1.customers.create_async(params={"email": "r@example.com"}, options=opts(acct))
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.invoices.create_async(
            params={"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 3},
            options=opts(acct, "draft"),
        )
    assert await objects(control, acct, "invoice") == []
    assert (await stats(control))["POST /v1/invoices 0"] == 1


async def test_lost_response_then_retry_with_the_same_key_returns_the_saved_object(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    customer = await client.v1.customers.create_async(params={"email": "lost@example.com"}, options=opts(acct))
    params: Any = {"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 3}
    await add_fault(control, method="POST", path="/v1/invoices", status=0, phase="after", count=1)
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.invoices.create_async(params=params, options=opts(acct, "draft-key"))
    saved = await objects(control, acct, "invoice")
    assert len(saved) == 1
    retried = await client.v1.invoices.create_async(params=params, options=opts(acct, "draft-key"))
    assert retried.id == saved[0]["id"]
    assert replayed(retried) == "true"
    assert len(await objects(control, acct, "invoice")) == 1

    await client.v1.invoice_items.create_async(
        params={"invoice": retried.id, "amount": 700, "currency": "usd"}, options=opts(acct)
    )
    await add_fault(control, method="POST", path="/v1/invoices/{id}/finalize", status=500, phase="after", count=1)
    with pytest.raises(stripe.APIError):
        await client.v1.invoices.finalize_invoice_async(retried.id, options=opts(acct, "fin-key"))
    finalized = await client.v1.invoices.finalize_invoice_async(retried.id, options=opts(acct, "fin-key"))
    assert finalized.status == "open" and finalized.number is not None and finalized.number.endswith("-0001")
    assert replayed(finalized) == "true"


async def test_fault_matching_rules(client: stripe.StripeClient, control: httpx.AsyncClient, acct: str) -> None:
    customer_id, invoice_id = await draft(client, acct)
    await add_fault(control, path="/v1/invoices/{id}/finalize", status=502)
    await add_fault(control, path="/v1/invoices", method="DELETE", status=500)
    await add_fault(control, path="/v1/invoice", status=500)  # prefixes end at a segment boundary
    await add_fault(control, path="/v1/invoices", status=500, rate=0.0)
    await add_fault(control, path="/v1/customers", status=500, account=f"{acct}x")
    await client.v1.invoice_items.create_async(
        params={"invoice": invoice_id, "amount": 5, "currency": "usd"}, options=opts(acct)
    )
    assert (await client.v1.invoices.retrieve_async(invoice_id, options=opts(acct))).status == "draft"
    await client.v1.customers.retrieve_async(customer_id, options=opts(acct))
    with pytest.raises(stripe.APIError) as finalize:
        await client.v1.invoices.finalize_invoice_async(invoice_id, options=opts(acct))
    assert finalize.value.http_status == 502
    with pytest.raises(stripe.APIError):
        await client.v1.invoices.delete_async(invoice_id, options=opts(acct))
    (await control.delete("/_emulator/faults")).raise_for_status()
    assert (await client.v1.invoices.finalize_invoice_async(invoice_id, options=opts(acct))).status == "open"
    bad = await control.post("/_emulator/faults", json={"path": "v1/no-slash", "status": 500})
    assert bad.status_code == 400


async def test_latency_from_config_and_from_faults(
    client: stripe.StripeClient, control: httpx.AsyncClient, acct: str
) -> None:
    (await control.post("/_emulator/config", json={"latency_ms": 150})).raise_for_status()
    started = time.monotonic()
    await client.v1.customers.list_async(options=opts(acct))
    assert time.monotonic() - started >= 0.15
    (await control.post("/_emulator/config", json={"latency_ms": 0})).raise_for_status()
    await add_fault(control, path="/v1/customers", latency_ms=200, count=1)
    started = time.monotonic()
    await client.v1.customers.list_async(options=opts(acct))
    assert time.monotonic() - started >= 0.2


async def test_rate_limit_per_account(client: stripe.StripeClient, control: httpx.AsyncClient, acct: str) -> None:
    (await control.post("/_emulator/config", json={"rate_limit_per_account": 5})).raise_for_status()

    async def create(i: int) -> str:
        try:
            await client.v1.customers.create_async(params={"email": f"r{i}@example.com"}, options=opts(acct))
            return "ok"
        except stripe.RateLimitError as error:
            assert error.error is not None and error.error.code == "rate_limit"
            return "limited"

    outcomes = await asyncio.gather(*(create(i) for i in range(8)))
    assert sorted(outcomes) == ["limited"] * 3 + ["ok"] * 5
    assert len(await objects(control, acct, "customer")) == 5, "a rate-limited request must not execute"
    await client.v1.customers.list_async(options=opts(f"{acct}x"))
    (await control.post("/_emulator/config", json={"rate_limit_per_account": None})).raise_for_status()
    assert (await stats(control))["POST /v1/customers 429"] == 3


async def test_stats_objects_and_reset(client: stripe.StripeClient, control: httpx.AsyncClient, acct: str) -> None:
    customer_id, invoice_id = await draft(client, acct)
    await client.v1.invoices.retrieve_async(invoice_id, options=opts(acct))
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.customers.retrieve_async("cus_nope", options=opts(acct))
    body = (await control.get("/_emulator/stats")).json()
    assert body["requests"] == {
        "POST /v1/customers 200": 1,
        "POST /v1/invoices 200": 1,
        "GET /v1/invoices/{id} 200": 1,
        "GET /v1/customers/{id} 404": 1,
    }
    assert body["total"] == 4 and body["by_status"] == {"200": 3, "404": 1}
    everything = (await control.get("/_emulator/objects", params={"account": acct})).json()
    assert everything["counts"]["customer"] == 1 and everything["counts"]["invoice"] == 1
    assert {o["id"] for o in everything["data"]} == {customer_id, invoice_id}
    assert (await control.get("/_emulator/objects", params={"type": "charge"})).status_code == 400
    (await control.post("/_emulator/reset")).raise_for_status()
    assert await objects(control, acct, "customer") == [] and (await stats(control)) == {}
    assert (await control.get("/_emulator/health")).json()["status"] == "ok"
