"""The raw JSON calls of ``StripeBilling`` send the very requests stripe-python's typed methods send.

The five hot calls (and the per-item ``/v1/invoiceitems``) skip stripe-python's ``StripeObject``
conversion (issue 16). Stripe accepts what its OpenAPI-generated typed methods send; so each raw call is
compared, request for request, with the typed method given the same parameters: method, path, query,
form body (decoded, order kept), ``Stripe-Account`` and ``Idempotency-Key``. Both go through one
``StripeClient`` over an ``httpx`` transport that records the requests and answers a canned object.
"""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import parse_qsl

import httpx
import pytest

from adapters.stripe.billing import StripeBilling, make_stripe_client
from adapters.stripe.rate_limit import AccountRateLimiter
from domain.billing import DraftInvoice, InvoiceItem, NewCustomer, StripeAddress
from domain.errors import PermanentError, RetryableError

ACCOUNT = "acct_wire"
INVOICE = {
    "id": "in_1", "object": "invoice", "number": "N-1", "status": "open", "amount_due": 100, "currency": "eur",
    "hosted_invoice_url": "https://x/i", "invoice_pdf": "https://x/p", "due_date": 1900000000,
}  # fmt: skip
ANSWERS = {"/v1/customers/search": {"object": "search_result", "data": [{"id": "cus_1", "object": "customer"}]}}

Request = tuple[str, str, list[tuple[str, str]], list[tuple[str, str]], str | None, str | None]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = parse_qsl(request.content.decode(), keep_blank_values=True)
        query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        headers = request.headers
        self.requests.append(
            (
                request.method,
                request.url.path,
                query,
                body,
                headers.get("stripe-account"),
                headers.get("idempotency-key"),
            )
        )
        answer = ANSWERS.get(
            request.url.path, {**INVOICE, "id": "cus_1" if "customers" in request.url.path else "in_1"}
        )
        return httpx.Response(200, json=answer)


@pytest.fixture
async def wire() -> Any:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        client = make_stripe_client(http, "sk_test_wire", "http://stripe.test")
        yield recorder, client, StripeBilling(client, AccountRateLimiter(rate_per_s=1000, burst=1000))


def _options(key: str | None = None) -> Any:
    return {"stripe_account": ACCOUNT, **({"idempotency_key": key} if key else {})}


ITEM = InvoiceItem(index=0, quantity=2, currency="eur", customer_id="cus_1", idempotency_key="k-item", price_id="p_1")
AMOUNT = InvoiceItem(
    index=1, quantity=3, currency="eur", customer_id="cus_1", idempotency_key="k-amount", description="Fee",
    unit_amount=250,
)  # fmt: skip
CUSTOMER = NewCustomer(
    name="Ada", email="ada@example.com", phone="+33100000000",
    address=StripeAddress(line1="1 Rue", city="Lyon", country="FR"), metadata={"crm_contact_id": "c1"},
)  # fmt: skip
DRAFT = DraftInvoice(customer_id="cus_1", currency="eur", due_date=1900000000, description="D", metadata={"a": "b"})


async def test_each_raw_call_sends_what_the_typed_method_sends(wire: Any) -> None:
    recorder, client, billing = wire
    v1 = client.v1
    lines = {"lines": [
        {"metadata": ITEM.stripe_params("in_1")["metadata"], "pricing": {"price": "p_1"}, "quantity": 2},
        {"metadata": {"line_index": "2"}, "amount": 500, "description": "Setup"},
    ]}  # fmt: skip
    pairs: list[tuple[Any, Any]] = [
        (lambda: billing.search_customers(ACCOUNT, 'email:"ada@example.com"'),
         lambda: v1.customers.search_async(params={"query": 'email:"ada@example.com"', "limit": 10},
                                           options=_options())),
        (lambda: billing.create_customer(ACCOUNT, CUSTOMER, "k-cus"),
         lambda: v1.customers.create_async(params=cast(Any, CUSTOMER.stripe_params()), options=_options("k-cus"))),
        (lambda: billing.create_draft_invoice(ACCOUNT, DRAFT, "k-draft"),
         lambda: v1.invoices.create_async(params=cast(Any, DRAFT.stripe_params()), options=_options("k-draft"))),
        (lambda: billing.add_invoice_items(ACCOUNT, "in_1", [AMOUNT], "k-batch"),
         lambda: v1.invoice_items.create_async(params=cast(Any, AMOUNT.stripe_params("in_1")),
                                               options=_options("k-amount"))),
        (lambda: billing.finalize_invoice(ACCOUNT, "in_1", "k-fin"),
         lambda: v1.invoices.finalize_invoice_async("in_1", params={"auto_advance": False},
                                                     options=_options("k-fin"))),
    ]  # fmt: skip
    for raw, typed in pairs:
        await raw()
        await typed()
        sent_raw, sent_typed = recorder.requests[-2:]
        assert sent_raw == sent_typed
    # add_lines: the bulk call, compared with its typed method on the parameters the adapter builds.
    await billing.add_invoice_items(ACCOUNT, "in_1", [ITEM, InvoiceItem(**{**vars(ITEM), "index": 2,
                                    "price_id": None, "quantity": 1, "unit_amount": 500, "description": "Setup",
                                    "idempotency_key": "k-x"})], "k-lines")  # fmt: skip
    await v1.invoices.add_lines_async("in_1", params=cast(Any, lines), options=_options("k-lines"))
    sent_raw, sent_typed = recorder.requests[-2:]
    assert sent_raw == sent_typed and sent_raw[1] == "/v1/invoices/in_1/add_lines"


async def test_the_answers_are_read_like_the_typed_objects(wire: Any) -> None:
    _, _, billing = wire
    assert await billing.search_customers(ACCOUNT, 'email:"a@b.c"') == ["cus_1"]
    assert await billing.create_draft_invoice(ACCOUNT, DRAFT, "k") == "in_1"
    finalized = await billing.finalize_invoice(ACCOUNT, "in_1", "k2")
    assert (finalized.id, finalized.status, finalized.amount_due, finalized.hosted_invoice_url) == (
        "in_1", "open", 100, "https://x/i",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, {"type": "invalid_request_error", "code": "resource_missing", "param": "lines[0][pricing][price]",
               "message": "No such price: 'p_1'"}, PermanentError),
        (429, {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}, RetryableError),
    ],
)  # fmt: skip
async def test_errors_of_the_raw_calls_are_translated_as_before(
    status: int, error: dict[str, Any], expected: type[Exception]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=json.dumps({"error": error}).encode())

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        billing = StripeBilling(
            make_stripe_client(http, "sk_test_wire", "http://stripe.test"), AccountRateLimiter(1000, 1000)
        )
        with pytest.raises(expected) as raised:
            await billing.add_invoice_items(ACCOUNT, "in_1", [ITEM, ITEM], "k")
    if status == 400:
        assert raised.value.reason == "price_not_found"  # type: ignore[attr-defined]
