"""The Stripe emulator's webhooks: endpoints, events, signed deliveries, retries, delivery faults, invoice
transitions, hosted-page payments and the clock.

Against the emulator of ``stripe_api_base`` (reset around every test) and a tiny receiver (aiohttp, on
127.0.0.1, a free port) that records what it is sent. Nothing sleeps to synchronise: tests wait for a
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        return [h.event for h in self.hits if path is None or h.path == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver("")

    async def handle(request: web.Request) -> web.Response:
        recv.hits.append(Received(request.path, dict(request.headers), await request.read(), time.monotonic()))
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


async def wait_for(condition: Callable[[], Awaitable[T | None] | T | None], what: str, timeout: float = 10) -> T:
    """Polls ``condition`` (sync or async) until it is truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
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


# -- endpoints --------------------------------------------------------------------------------------
async def test_webhook_endpoint_lifecycle(client: stripe.StripeClient, api: httpx.AsyncClient) -> None:
    created = await client.v1.webhook_endpoints.create_async(
        {"url": "https://example.com/hooks", "enabled_events": ["invoice.paid"], "connect": True, "description": "d"}
    )
    assert created.secret.startswith("whsec_") and created.status == "enabled" and created.object == "webhook_endpoint"
    assert set(created.to_dict()) == {
        "id", "object", "api_version", "application", "created", "description", "enabled_events", "livemode",
        "metadata", "secret", "status", "url",
    }  # fmt: skip
    fetched = await client.v1.webhook_endpoints.retrieve_async(created.id)
    assert "secret" not in fetched.to_dict() and fetched.enabled_events == ["invoice.paid"]
    listed = await client.v1.webhook_endpoints.list_async()
    assert [e.id for e in listed.data] == [created.id]
    updated = await client.v1.webhook_endpoints.update_async(
        created.id, {"enabled_events": ["*"], "disabled": True}
    )
    assert updated.status == "disabled" and updated.enabled_events == ["*"]
    deleted = await client.v1.webhook_endpoints.delete_async(created.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.webhook_endpoints.retrieve_async(created.id)
    assert missing.value.http_status == 404

    bad = {"url": "https://example.com/h", "enabled_events[]": ["invoice.payed"]}
    assert refused(await api.post("/v1/webhook_endpoints", data=bad))["param"] == "enabled_events[0]"
    no_url = refused(await api.post("/v1/webhook_endpoints", data={"enabled_events[]": ["*"]}))
    assert no_url["code"] == "parameter_missing" and no_url["param"] == "url"
    not_a_url = {"url": "example.com", "enabled_events[]": ["*"]}
    assert refused(await api.post("/v1/webhook_endpoints", data=not_a_url))["param"] == "url"


# -- deliveries ------------------------------------------------------------------------------------
async def test_delivery_is_signed_as_stripe_signs(api: httpx.AsyncClient, receiver: Receiver) -> None:
    hook = await endpoint(api, f"{receiver.base}/platform", ["invoice.finalized"])
    h = {"Idempotency-Key": "fin-1"}
    cus = ok(await api.post("/v1/customers", data={"email": "ada@example.com"}))["id"]
    inv = ok(await api.post("/v1/invoices", data={"customer": cus}))["id"]
    ok(await api.post("/v1/invoiceitems", data={"customer": cus, "invoice": inv, "amount": "700", "currency": "usd"}))
    ok(await api.post(f"/v1/invoices/{inv}/finalize", headers=h))

    hit = (await wait_for(lambda: receiver.hits, "the delivery"))[0]
    header = hit.headers["Stripe-Signature"]
    assert stripe.WebhookSignature.verify_header(hit.body.decode(), header, hook["secret"], tolerance=300)
    event = stripe.Webhook.construct_event(hit.body.decode(), header, hook["secret"])
    assert event.type == "invoice.finalized" and event.object == "event" and event.id.startswith("evt_")
    body = hit.event
    assert "account" not in body and body["livemode"] is False and body["api_version"]
    assert body["data"]["object"]["id"] == inv and body["data"]["object"]["status"] == "open"
    assert body["request"]["idempotency_key"] == "fin-1" and body["request"]["id"].startswith("req_")
    assert hit.headers["Content-Type"].startswith("application/json")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(hit.body.decode(), header, "whsec_wrong", tolerance=300)
    # the replayed finalize (same idempotency key) emits nothing more
    assert (await api.post(f"/v1/invoices/{inv}/finalize", headers=h)).headers["Idempotent-Replayed"] == "true"
    assert len(await events(api, type="invoice.finalized")) == 1
    done = await wait_for(lambda: _status(api, "succeeded"), "the delivery recorded")
    assert done[0]["attempt_count"] == 1 and done[0]["last_response_code"] == 200
    assert ok(await api.get(f"/v1/events/{body['id']}"))["pending_webhooks"] == 0


async def _status(api: httpx.AsyncClient, status: str) -> list[dict[str, Any]]:
    return await deliveries(api, status=status)


async def test_connect_endpoints_get_connected_accounts_events(
    api: httpx.AsyncClient, receiver: Receiver, acct: str
) -> None:
    await endpoint(api, f"{receiver.base}/connect", ["invoice.finalized"], connect=True)
    await endpoint(api, f"{receiver.base}/platform", ["invoice.finalized"], connect=False)
    connected_inv = await open_invoice(api, acct)
    platform_inv = await open_invoice(api, None)
    await wait_for(lambda: len(receiver.hits) >= 2, "two deliveries")
    connect, platform = receiver.events("/connect"), receiver.events("/platform")
    assert [e["data"]["object"]["id"] for e in connect] == [connected_inv] and connect[0]["account"] == acct
    assert [e["data"]["object"]["id"] for e in platform] == [platform_inv] and "account" not in platform[0]


async def test_failed_delivery_is_retried_until_it_succeeds(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await endpoint(api, f"{receiver.base}/h", ["invoice.voided"])
    receiver.statuses = [500]
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    done = await wait_for(lambda: _status(api, "succeeded"), "the retried delivery")
    assert done[0]["attempt_count"] == 2 and done[0]["last_response_code"] == 200
    assert [a["response_code"] for a in done[0]["attempts"]] == [500, 200]
    assert len({e["id"] for e in receiver.events()}) == 1 and len(receiver.hits) == 2

    receiver.statuses = [503, 500, 500]  # every attempt fails: 1 + len(schedule) attempts, then failed
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    failed = await wait_for(lambda: _status(api, "failed"), "the delivery to give up")
    assert failed[0]["attempt_count"] == 3 and failed[0]["last_response_code"] == 500
    event = ok(await api.get(f"/v1/events/{failed[0]['event']}"))
    assert event["pending_webhooks"] == 1
    assert [e["id"] for e in await events(api, delivery_success="false")] == [event["id"]]


async def test_unreachable_endpoint_is_retried(api: httpx.AsyncClient) -> None:
    await endpoint(api, "http://127.0.0.1:9/nothing", ["invoice.voided"])  # discard port: refused
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    failed = await wait_for(lambda: _status(api, "failed"), "the delivery to give up")
    assert failed[0]["attempt_count"] == 3 and failed[0]["last_response_code"] is None
    assert failed[0]["last_error"]
