"""The Stripe emulator's webhooks: endpoints, signed deliveries, connect routing, retries, delivery faults.

Against the emulator of ``stripe_api_base`` (reset around every test) and a tiny receiver (aiohttp on
127.0.0.1, a free port) recording what it is sent. Nothing sleeps to synchronise: tests wait for a
condition with a deadline (:func:`~tests.integration.stripe_hooks.wait_for`).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from tests.integration import stripe_hooks as hooks
from tests.integration.stripe_hooks import (
    Receiver,
    deliveries,
    endpoint,
    events,
    ok,
    open_invoice,
    refused,
    wait_for,
    with_status,
)

receiver, api, client, acct = hooks.receiver, hooks.api, hooks.client, hooks.acct


# -- endpoints --------------------------------------------------------------------------------------
async def test_webhook_endpoint_lifecycle(client: stripe.StripeClient, api: httpx.AsyncClient) -> None:
    created = await client.v1.webhook_endpoints.create_async(
        {"url": "https://example.com/hooks", "enabled_events": ["invoice.paid"], "connect": True, "description": "d"}
    )
    assert (
        created.secret is not None
        and created.secret.startswith("whsec_")
        and created.status == "enabled"
        and created.object == "webhook_endpoint"
    )
    assert set(created.to_dict()) == {
        "id", "object", "api_version", "application", "created", "description", "enabled_events", "livemode",
        "metadata", "secret", "status", "url",
    }  # fmt: skip
    fetched = await client.v1.webhook_endpoints.retrieve_async(created.id)
    assert "secret" not in fetched.to_dict() and fetched.enabled_events == ["invoice.paid"]
    listed = await client.v1.webhook_endpoints.list_async()
    assert [e.id for e in listed.data] == [created.id]
    updated = await client.v1.webhook_endpoints.update_async(created.id, {"enabled_events": ["*"], "disabled": True})
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
    done = await wait_for(lambda: with_status(api, "succeeded"), "the delivery recorded")
    assert done[0]["attempt_count"] == 1 and done[0]["last_response_code"] == 200
    assert ok(await api.get(f"/v1/events/{body['id']}"))["pending_webhooks"] == 0


async def test_connect_endpoints_get_connected_accounts_events(
    api: httpx.AsyncClient, receiver: Receiver, acct: str
) -> None:
    hook_connect = await endpoint(api, f"{receiver.base}/connect", ["invoice.finalized"], connect=True)
    hook_platform = await endpoint(api, f"{receiver.base}/platform", ["invoice.finalized"], connect=False)
    off = await endpoint(api, f"{receiver.base}/disabled", ["*"], connect=True)
    ok(await api.post(f"/v1/webhook_endpoints/{off['id']}", data={"disabled": "true"}))
    await endpoint(api, f"{receiver.base}/other-types", ["invoice.paid"], connect=True)
    connected_inv = await open_invoice(api, acct)
    platform_inv = await open_invoice(api, None)
    await wait_for(lambda: len(receiver.hits) >= 2, "two deliveries")
    connect, platform = receiver.events("/connect"), receiver.events("/platform")
    assert [e["data"]["object"]["id"] for e in connect] == [connected_inv] and connect[0]["account"] == acct
    assert [e["data"]["object"]["id"] for e in platform] == [platform_inv] and "account" not in platform[0]
    # neither the disabled endpoint nor the one enabled for other types got a delivery
    assert {d["endpoint"] for d in await deliveries(api)} == {hook_connect["id"], hook_platform["id"]}


async def test_slow_endpoint_times_out_and_is_retried(api: httpx.AsyncClient, receiver: Receiver) -> None:
    (await api.post("/_emulator/config", json={"webhook_timeout_s": 0.3})).raise_for_status()
    await endpoint(api, f"{receiver.base}/slow", ["invoice.voided"])
    receiver.stall = 1
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    done = await wait_for(lambda: with_status(api, "succeeded"), "the retry after a timeout")
    assert [(a["response_code"], a["error"]) for a in done[0]["attempts"]] == [(None, "timeout"), (200, None)]


async def test_failed_delivery_is_retried_until_it_succeeds(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await endpoint(api, f"{receiver.base}/h", ["invoice.voided"])
    receiver.statuses = [500]
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    done = await wait_for(lambda: with_status(api, "succeeded"), "the retried delivery")
    assert done[0]["attempt_count"] == 2 and done[0]["last_response_code"] == 200
    assert [a["response_code"] for a in done[0]["attempts"]] == [500, 200]
    assert len({e["id"] for e in receiver.events()}) == 1 and len(receiver.hits) == 2

    receiver.statuses = [503, 500, 500]  # every attempt fails: 1 + len(schedule) attempts, then failed
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    failed = await wait_for(lambda: with_status(api, "failed"), "the delivery to give up")
    assert failed[0]["attempt_count"] == 3 and failed[0]["last_response_code"] == 500
    event = ok(await api.get(f"/v1/events/{failed[0]['event']}"))
    assert event["pending_webhooks"] == 1
    assert [e["id"] for e in await events(api, delivery_success="false")] == [event["id"]]


async def test_unreachable_endpoint_is_retried(api: httpx.AsyncClient) -> None:
    await endpoint(api, "http://127.0.0.1:9/nothing", ["invoice.voided"])  # discard port: refused
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    failed = await wait_for(lambda: with_status(api, "failed"), "the delivery to give up")
    assert failed[0]["attempt_count"] == 3 and failed[0]["last_response_code"] is None
    assert failed[0]["last_error"]


# -- delivery faults --------------------------------------------------------------------------------
async def _fault(api: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    return ok(await api.post("/_emulator/webhook_faults", json=spec))


async def test_dropped_delivery_is_never_sent(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await endpoint(api, f"{receiver.base}/h", ["invoice.voided", "invoice.finalized"])
    fault = await _fault(api, kind="drop", type="invoice.voided", count=1)
    assert fault["id"].startswith("wfl_") and fault["remaining"] == 1
    lost, kept = await open_invoice(api, None), await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{lost}/void"))
    ok(await api.post(f"/v1/invoices/{kept}/void"))
    voided = await wait_for(lambda: [e for e in receiver.events() if e["type"] == "invoice.voided"], "a voided event")
    assert [e["data"]["object"]["id"] for e in voided] == [kept]
    assert [d["status"] for d in await deliveries(api, type="invoice.voided")] == ["dropped", "succeeded"]
    assert (await api.get("/_emulator/webhook_faults")).json()["data"][0]["remaining"] == 0
    # the event itself exists: reconciliation through GET /v1/events finds it
    assert {e["data"]["object"]["id"] for e in await events(api, type="invoice.voided")} == {lost, kept}
    assert (await api.post("/_emulator/webhook_faults", json={"kind": "explode"})).status_code == 400


async def test_duplicated_delivery_arrives_twice(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await endpoint(api, f"{receiver.base}/h", ["invoice.voided"])
    await _fault(api, kind="duplicate")
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    twice = await wait_for(lambda: len(receiver.hits) == 2 and receiver.events(), "two copies")
    assert twice[0]["id"] == twice[1]["id"]
    records = await deliveries(api)
    assert sorted(d["duplicate_of"] is None for d in records) == [False, True]


async def test_delayed_delivery(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await endpoint(api, f"{receiver.base}/h", ["invoice.voided"])
    await _fault(api, kind="delay", delay_ms=400)
    inv = await open_invoice(api, None)
    sent = time.monotonic()
    ok(await api.post(f"/v1/invoices/{inv}/void"))
    hit = (await wait_for(lambda: receiver.hits, "the delayed delivery"))[0]
    assert hit.at - sent >= 0.4


async def test_held_deliveries_are_released_in_reverse(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await endpoint(api, f"{receiver.base}/h", ["invoice.finalized", "invoice.paid"])
    await _fault(api, kind="hold")
    inv = await open_invoice(api, None)
    ok(await api.post(f"/v1/invoices/{inv}/pay", data={"paid_out_of_band": "true"}))
    held = await deliveries(api, status="held")
    assert len(held) == 2 and receiver.hits == []
    (await api.delete("/_emulator/webhook_faults")).raise_for_status()
    released = ok(await api.post("/_emulator/webhook_deliveries/release", json={"order": "reverse"}))["released"]
    assert released == [held[1]["id"], held[0]["id"]]
    await wait_for(lambda: len(receiver.hits) == 2, "the released deliveries")
    assert [e["type"] for e in receiver.events()] == ["invoice.paid", "invoice.finalized"]  # out of order
