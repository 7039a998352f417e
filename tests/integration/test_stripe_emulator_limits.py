"""Stripe's limits on customer fields and currencies, as the emulator enforces them.

The emulator runs in process (its ASGI app over ``httpx.ASGITransport``): these are parameter checks, so
a fresh emulator per test costs nothing and needs no reset of the shared one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from deploy.local.emulators.stripe_emulator import build_app

HEADERS = {"Authorization": "Bearer sk_test_paylink_local_emulator", "Stripe-Account": "acct_1limits"}


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://stripe.test", headers=HEADERS) as http:
        yield http


def refused(response: httpx.Response, param: str) -> str:
    """Stripe's error shape for a bad parameter; returns the message."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    return str(error["message"])


async def customer_id(api: httpx.AsyncClient) -> str:
    response = await api.post("/v1/customers", data={"email": "ada@example.com"})
    response.raise_for_status()
    return str(response.json()["id"])


# Stripe quotes a long value by its first and last ten characters, a short one whole.
@pytest.mark.parametrize(
    ("field", "limit", "quoted"), [("name", 256, "7777777777...7777777777"), ("phone", 20, "7" * 21)]
)
async def test_customer_fields_longer_than_stripe_allows_are_refused(
    api: httpx.AsyncClient, field: str, limit: int, quoted: str
) -> None:
    longest = "7" * limit
    created = await api.post("/v1/customers", data={field: longest})
    assert created.status_code == 200 and created.json()[field] == longest

    too_long = "7" * (limit + 1)
    message = refused(await api.post("/v1/customers", data={field: too_long}), field)
    assert message == f"Invalid string: {quoted}; must be at most {limit} characters"
    updated = await api.post(f"/v1/customers/{created.json()['id']}", data={field: too_long})
    assert refused(updated, field) == message
    listed = (await api.get("/v1/customers", params={"limit": 100})).json()["data"]
    assert len(listed) == 1, "a refused customer was created"


@pytest.mark.parametrize("currency", ["xyz", "abc", "xau", "xts", "usdd", "us"])
async def test_only_real_currencies_are_accepted(api: httpx.AsyncClient, currency: str) -> None:
    customer = await customer_id(api)
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/v1/prices", {"currency": currency, "unit_amount": 100, "product_data[name]": "Plan"}),
        ("/v1/invoices", {"customer": customer, "currency": currency}),
        ("/v1/invoiceitems", {"customer": customer, "currency": currency, "amount": 100}),
    ]
    for path, data in requests:
        message = refused(await api.post(path, data=data), "currency")
        assert message.startswith(f"Invalid currency: {currency}. Stripe currently supports these currencies: usd, ")
        assert "eur" in message and "jpy" in message


@pytest.mark.parametrize(("given", "stored"), [("eur", "eur"), ("JPY", "jpy"), ("chf", "chf"), ("xof", "xof")])
async def test_real_currencies_are_accepted_in_either_case(api: httpx.AsyncClient, given: str, stored: str) -> None:
    response = await api.post("/v1/prices", data={"currency": given, "unit_amount": 100, "product_data[name]": "Plan"})
    assert response.status_code == 200, response.text
    assert response.json()["currency"] == stored
