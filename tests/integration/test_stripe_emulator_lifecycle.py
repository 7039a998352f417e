"""The Stripe emulator's invoice transitions and their events: pay (out of band), void, mark uncollectible,
a customer paying or failing on the hosted page, ``GET /v1/events`` filters, and the movable clock.

Same emulator, receiver and fixtures as ``test_stripe_emulator_webhooks.py`` (:mod:`tests.integration.stripe_hooks`).
"""

from __future__ import annotations

import time

import httpx
import stripe

from tests.integration import stripe_hooks as hooks
from tests.integration.stripe_hooks import (
    Receiver,
    endpoint,
    events,
    ok,
    open_invoice,
    refused,
    wait_for,
)

receiver, api, client, acct = hooks.receiver, hooks.api, hooks.client, hooks.acct


# -- invoice transitions ----------------------------------------------------------------------------
async def test_pay_out_of_band_and_its_events(client: stripe.StripeClient, api: httpx.AsyncClient, acct: str) -> None:
    inv = await open_invoice(api, acct, amount=4200)
    h = {"Stripe-Account": acct}
    no_method = refused(await api.post(f"/v1/invoices/{inv}/pay", headers=h))
    assert no_method["message"].startswith("This customer has no attached payment source or default payment method.")
    paid = await client.v1.invoices.pay_async(
        inv, {"paid_out_of_band": True}, {"stripe_account": acct, "idempotency_key": "pay-1"}
    )
    assert paid.status == "paid" and paid.amount_paid == 4200 and paid.amount_remaining == 0
    assert paid.amount_paid_off_stripe == 4200 and paid.attempt_count == 0
    assert paid.status_transitions.paid_at and paid.status_transitions.finalized_at
    again = await client.v1.invoices.pay_async(
        inv, {"paid_out_of_band": True}, {"stripe_account": acct, "idempotency_key": "pay-1"}
    )
    assert again.last_response and again.last_response.headers["idempotent-replayed"] == "true"
    assert (
        refused(await api.post(f"/v1/invoices/{inv}/pay", data={"paid_out_of_band": "true"}, headers=h))["message"]
        == "Invoice is already paid"
    )
    paid_events = await events(api, acct, type="invoice.paid")
    assert len(paid_events) == 1 and paid_events[0]["data"]["object"]["status"] == "paid"
    assert paid_events[0]["account"] == acct and paid_events[0]["request"]["idempotency_key"] == "pay-1"
    updated = (await events(api, acct, type="invoice.updated"))[0]
    assert updated["data"]["previous_attributes"]["status"] == "open"
    assert updated["data"]["previous_attributes"]["status_transitions"] == {"paid_at": None}
    assert await events(api, acct, type="invoice.payment_succeeded") == []  # no payment was made


async def test_void_uncollectible_and_their_status_rules(api: httpx.AsyncClient, acct: str) -> None:
    h = {"Stripe-Account": acct}
    voided = await open_invoice(api, acct)
    body = ok(await api.post(f"/v1/invoices/{voided}/void", headers=h))
    assert body["status"] == "void" and body["status_transitions"]["voided_at"]
    assert (
        refused(await api.post(f"/v1/invoices/{voided}/pay", data={"paid_out_of_band": "true"}, headers=h))["message"]
        == "Voided invoices cannot be paid."
    )
    refused(await api.post(f"/v1/invoices/{voided}/mark_uncollectible", headers=h))

    bad_debt = await open_invoice(api, acct)
    body = ok(await api.post(f"/v1/invoices/{bad_debt}/mark_uncollectible", headers=h))
    assert body["status"] == "uncollectible" and body["status_transitions"]["marked_uncollectible_at"]
    paid = ok(await api.post(f"/v1/invoices/{bad_debt}/pay", data={"paid_out_of_band": "true"}, headers=h))
    assert paid["status"] == "paid" and paid["status_transitions"]["paid_at"]
    refused(await api.post(f"/v1/invoices/{bad_debt}/void", headers=h))

    abandoned = await open_invoice(api, acct)
    ok(await api.post(f"/v1/invoices/{abandoned}/mark_uncollectible", headers=h))
    assert ok(await api.post(f"/v1/invoices/{abandoned}/void", headers=h))["status"] == "void"

    by_type = {t: [e["data"]["object"]["id"] for e in await events(api, acct, type=t)] for t in (
        "invoice.voided", "invoice.marked_uncollectible", "invoice.paid", "invoice.finalized", "invoice.created",
    )}  # fmt: skip
    assert by_type["invoice.voided"] == [abandoned, voided]  # newest first
    assert by_type["invoice.marked_uncollectible"] == [abandoned, bad_debt]
    assert by_type["invoice.paid"] == [bad_debt]
    assert len(by_type["invoice.finalized"]) == len(by_type["invoice.created"]) == 3

    draft_cus = ok(await api.post("/v1/customers", data={"email": "b@example.com"}, headers=h))["id"]
    draft = ok(await api.post("/v1/invoices", data={"customer": draft_cus}, headers=h))["id"]
    item = {"customer": draft_cus, "invoice": draft, "amount": "900", "currency": "usd"}
    ok(await api.post("/v1/invoiceitems", data=item, headers=h))
    refused(await api.post(f"/v1/invoices/{draft}/mark_uncollectible", headers=h))
    paid_draft = ok(await api.post(f"/v1/invoices/{draft}/pay", data={"paid_out_of_band": "true"}, headers=h))
    assert paid_draft["status"] == "paid" and paid_draft["number"]  # pay finalizes a draft first


async def test_hosted_page_payment_fails_then_succeeds(api: httpx.AsyncClient, receiver: Receiver, acct: str) -> None:
    await endpoint(api, f"{receiver.base}/c", ["invoice.payment_failed", "payment_intent.payment_failed"], True)
    inv = await open_invoice(api, acct, amount=1500)
    h = {"Stripe-Account": acct}
    attempt = {"account": acct, "outcome": "failed", "failure_message": "Your card has insufficient funds."}
    failed = ok(
        await api.post(
            f"/_emulator/invoices/{inv}/hosted_payment", json=attempt | {"decline_code": "insufficient_funds"}
        )
    )
    assert failed["status"] == "open" and failed["attempt_count"] == 1 and failed["attempted"] is True
    await wait_for(lambda: len(receiver.hits) >= 2, "both failure events")
    by_type = {e["type"]: e for e in receiver.events()}
    assert by_type["invoice.payment_failed"]["data"]["object"]["attempt_count"] == 1
    error = by_type["payment_intent.payment_failed"]["data"]["object"]["last_payment_error"]
    assert error["message"] == "Your card has insufficient funds." and error["decline_code"] == "insufficient_funds"
    assert error["type"] == "card_error" and error["code"] == "card_declined"

    expanded = ok(
        await api.get(f"/v1/invoices/{inv}", params={"expand[]": "payments.data.payment.payment_intent"}, headers=h)
    )
    intent = expanded["payments"]["data"][0]["payment"]["payment_intent"]
    assert intent["last_payment_error"]["message"] == "Your card has insufficient funds."
    assert ok(await api.get(f"/v1/payment_intents/{intent['id']}", headers=h))["status"] == "requires_payment_method"
    assert "payments" not in ok(await api.get(f"/v1/invoices/{inv}", headers=h))  # includable only

    paid = ok(await api.post(f"/_emulator/invoices/{inv}/hosted_payment", json={"account": acct}))
    assert paid["status"] == "paid" and paid["attempt_count"] == 2 and paid["amount_paid"] == 1500
    assert paid["amount_paid_off_stripe"] is None
    types = [e["type"] for e in await events(api, acct)]
    assert {"invoice.paid", "invoice.payment_succeeded", "payment_intent.succeeded"} <= set(types)
    gone = await api.post(f"/_emulator/invoices/{inv}/hosted_payment", json={"account": acct})
    assert gone.status_code == 400
    assert (await api.post(f"/_emulator/invoices/{inv}/hosted_payment", json={"outcome": "maybe"})).status_code == 400


# -- events -----------------------------------------------------------------------------------------
async def test_events_listing_filters(client: stripe.StripeClient, api: httpx.AsyncClient, acct: str) -> None:
    first = await open_invoice(api, acct)
    ok(await api.post(f"/v1/invoices/{first}/void", headers={"Stripe-Account": acct}))
    await open_invoice(api, None)  # the platform's events stay the platform's

    everything = await events(api, acct, limit=100)
    created = [e["created"] for e in everything]
    assert created == sorted(created, reverse=True) and all(e["account"] == acct for e in everything)
    assert [e["type"] for e in everything][:2] == ["invoice.updated", "invoice.voided"]
    assert {e["type"] for e in await events(api, acct, type="invoice.voided")} == {"invoice.voided"}
    assert {e["type"] for e in await events(api, acct, **{"types[]": ["invoice.voided", "invoice.finalized"]})} == {
        "invoice.voided", "invoice.finalized",
    }  # fmt: skip
    assert len(await events(api, acct, type="invoice.*")) == len(everything)
    assert await events(api, acct, type="customer.*") == []
    newest = everything[0]["created"]
    assert len(await events(api, acct, **{"created[gte]": newest})) >= 1
    assert await events(api, acct, **{"created[gt]": newest}) == []
    assert len(await events(api, acct, **{"created[lte]": newest})) == len(everything)
    page = await events(api, acct, limit=2)
    rest = await events(api, acct, limit=100, starting_after=page[-1]["id"])
    assert [e["id"] for e in page + rest] == [e["id"] for e in everything]

    listed = await client.v1.events.list_async({"type": "invoice.voided"}, {"stripe_account": acct})
    assert listed.data[0].data.object["id"] == first
    fetched = await client.v1.events.retrieve_async(listed.data[0].id, options={"stripe_account": acct})
    assert fetched.type == "invoice.voided"
    assert all("account" not in e for e in await events(api, None))
    refused(await api.get(f"/v1/events/{fetched.id}"), 404)  # not the platform's event
    h = {"Stripe-Account": acct}
    both = refused(await api.get("/v1/events", params={"type": "a", "types[]": "b"}, headers=h))
    assert both["param"] == "types"
    assert refused(await api.get("/v1/events", params={"colour": "red"}, headers=h))["code"] == "parameter_unknown"


# -- the clock --------------------------------------------------------------------------------------
async def test_clock_moves_forward(api: httpx.AsyncClient, acct: str) -> None:
    h = {"Stripe-Account": acct}
    old_invoice = await open_invoice(api, acct)
    old_event = (await events(api, acct))[0]
    before = ok(await api.get("/_emulator/clock"))
    assert before["offset_seconds"] == 0 and abs(before["now"] - time.time()) < 5
    day = 86400
    moved = ok(await api.post("/_emulator/clock", json={"advance_seconds": 31 * day}))
    assert moved["offset_seconds"] == 31 * day and moved["now"] >= before["now"] + 31 * day
    assert (await api.post("/_emulator/clock", json={"advance_seconds": -1})).status_code == 400

    cus = ok(await api.post("/v1/customers", data={"email": "c@example.com"}, headers=h))["id"]
    soon = int(time.time()) + 7 * day  # in the future by the wall clock, in the past by the emulator's
    form = {"customer": cus, "collection_method": "send_invoice", "due_date": str(soon)}
    assert refused(await api.post("/v1/invoices", data=form, headers=h))["param"] == "due_date"
    later = ok(await api.post("/v1/invoices", data=form | {"due_date": str(moved["now"] + day)}, headers=h))
    assert later["created"] >= moved["now"]
    voided = ok(await api.post(f"/v1/invoices/{old_invoice}/void", headers=h))
    assert voided["status_transitions"]["voided_at"] >= moved["now"]
    listed = {e["id"] for e in await events(api, acct, limit=100)}
    assert old_event["id"] not in listed  # older than 30 days now: out of GET /v1/events, like Stripe
    assert ok(await api.get(f"/v1/events/{old_event['id']}", headers=h))["id"] == old_event["id"]
    (await api.post("/_emulator/reset")).raise_for_status()
    assert ok(await api.get("/_emulator/clock"))["offset_seconds"] == 0
