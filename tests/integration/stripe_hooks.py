"""Shared by the Stripe emulator's webhook tests: a recording receiver, the fixtures, small API helpers.

The fixtures are bound into each test module by name (``receiver = hooks.receiver``): the API client
resets the emulator before and after every test and compresses the retry schedule to 0.05 s, 0.1 s.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import stripe
from aiohttp import web

KEY = "sk_test_paylink_local_emulator"
T = TypeVar("T")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    base: str
    hits: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once exhausted
    stall: int = 0  # the next N requests get no answer until the test ends (the sender times out)
    unstall: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        return [h.event for h in self.hits if path is None or h.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver("")

    async def handle(request: web.Request) -> web.Response:
        recv.hits.append(Received(request.path, dict(request.headers), await request.read(), time.monotonic()))
        if recv.stall:
            recv.stall -= 1
            await recv.unstall.wait()
        return web.Response(status=recv.statuses.pop(0) if recv.statuses else 200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.base = f"http://127.0.0.1:{port}"
    yield recv
    recv.unstall.set()
    await runner.cleanup()


@pytest.fixture
async def api(stripe_api_base: str) -> AsyncIterator[httpx.AsyncClient]:
    """Stripe API and control client; the emulator is reset before and after the test."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=stripe_api_base, headers=headers, timeout=10) as http:
        (await http.post("/_emulator/reset")).raise_for_status()
        (await http.post("/_emulator/config", json={"webhook_retry_delays_s": [0.05, 0.1]})).raise_for_status()
        yield http
        (await http.post("/_emulator/reset")).raise_for_status()


@pytest.fixture
async def client(stripe_api_base: str, api: httpx.AsyncClient) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.HTTPXClient()
    yield stripe.StripeClient(KEY, http_client=http_client, base_addresses={"api": stripe_api_base})
    await http_client.close_async()  # type: ignore[no-untyped-call]


@pytest.fixture
def acct() -> str:
    return f"acct_1{uuid.uuid4().hex[:16]}"


async def wait_for(condition: Callable[[], Any], what: str, within: float = 10) -> Any:
    """Polls ``condition`` (sync or async) until it is truthy; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


async def endpoint(api: httpx.AsyncClient, url: str, events: list[str], connect: bool = False) -> dict[str, Any]:
    form = {"url": url, "enabled_events[]": events, "connect": str(connect).lower()}
    return ok(await api.post("/v1/webhook_endpoints", data=form))


async def open_invoice(api: httpx.AsyncClient, account: str | None, amount: int = 2500, **extra: str) -> str:
    """A finalized ``send_invoice`` invoice of ``amount`` cents on ``account`` (None = the platform)."""
    h = {"Stripe-Account": account} if account else {}
    cus = ok(await api.post("/v1/customers", data={"email": "ada@example.com"}, headers=h))["id"]
    form = {"customer": cus, "collection_method": "send_invoice", "days_until_due": "7"}
    inv = ok(await api.post("/v1/invoices", data=form | extra, headers=h))["id"]
    item = {"customer": cus, "invoice": inv, "amount": str(amount), "currency": "usd"}
    ok(await api.post("/v1/invoiceitems", data=item, headers=h))
    ok(await api.post(f"/v1/invoices/{inv}/finalize", headers=h))
    return str(inv)


async def deliveries(api: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    return list(ok(await api.get("/_emulator/webhook_deliveries", params=query))["data"])


async def events(api: httpx.AsyncClient, account: str | None = None, **query: Any) -> list[dict[str, Any]]:
    h = {"Stripe-Account": account} if account else {}
    return list(ok(await api.get("/v1/events", params=query, headers=h))["data"])


async def with_status(api: httpx.AsyncClient, status: str) -> list[dict[str, Any]]:
    return await deliveries(api, status=status)
