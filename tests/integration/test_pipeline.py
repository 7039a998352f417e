"""The pipeline end to end on the real stack: Kafka in, saga against the Stripe emulator, outbox, relay, Kafka out."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.integration.harness import (
    ResultCollector,
    produce,
    request,
    running_pipeline,
    seed_tenant,
    stripe_objects,
)

CONTACTS: dict[str, dict[str, Any]] = {
    "ada": {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+441234567890",
        "address": {"street": "1 Analytical Way", "city": "London", "country": "GB"},
    },
    # Quotes and a backslash that would widen the customer search to Ada's if they were not escaped.
    "bob": {"first_name": "Bob", "last_name": "Quote", "email": 'bob\\"OR"email:"ada@example.com'},
    "nobody": {"name": "No Email Or Phone"},
}


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack()


def database(client: AsyncMongoClient[dict[str, Any]], settings: Settings) -> Any:
    return client[settings.mongodb_uri.rsplit("/", 1)[1]]


async def test_every_contract_outcome_end_to_end(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS, prices={"Widget": 2500, "Gadget": 990})
    unconnected = await seed_tenant(db, stripe_api_base, {"carol": {"email": "carol@example.com"}}, connected=False)
    other = await seed_tenant(db, stripe_api_base, {"mallory": {"email": "m@example.com"}})
    tomorrow_plus = (date.today() + timedelta(days=30)).isoformat()
    requests = {
        "created_prices": request(
            tenant,
            "ada",
            line_items=[{"price_id": tenant.prices["Widget"], "quantity": 3}, {"description": "Setup", "amount": 5000}],
            due_date=tomorrow_plus,
            days_until_due=None,
            note_id="note-1",
            metadata={"crm_deal": "D-9"},
        ),
        "created_quotes_in_email": request(tenant, "bob"),
        "no_email_or_phone": request(tenant, "nobody"),
        "contact_not_found": request(tenant, "con-does-not-exist"),
        "other_tenants_contact": request(tenant, other.contacts["mallory"]["_id"]),
        "account_not_connected": request(unconnected, "carol"),
        "past_due_date": request(tenant, "ada", due_date="2020-01-01", days_until_due=None),
        "unknown_price": request(
            tenant, "ada", line_items=[{"description": "ok", "amount": 100}, {"price_id": "price_missing"}]
        ),
        "invalid_line_items": request(tenant, "ada", line_items=[{"price_id": "p", "amount": 5}]),
    }
    async with running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, list(requests.values()))
        await produce(stack, [b'{"event_id": "11111111-2222-3333-4444-555555555555", "oops": 1}', b"\xff\xfe garbage"])
        ids = {name: body["event_id"] for name, body in requests.items()}
        results = await collector.wait_for(set(ids.values()) | {"11111111-2222-3333-4444-555555555555"})

    by_name = {name: results[event_id] for name, event_id in ids.items()}
    for name in ("created_prices", "created_quotes_in_email"):
        assert by_name[name]["event_type"] == "PaymentLinkCreated", by_name[name]
        assert by_name[name]["status"] == "open"
        assert by_name[name]["url"] == by_name[name]["short_url"]
        assert by_name[name]["hosted_invoice_url"].startswith("https://invoice.stripe.com/i/")
    assert by_name["created_prices"]["amount_due"] == 3 * 2500 + 5000
    assert by_name["created_prices"]["due_date"] == tomorrow_plus
    assert by_name["created_quotes_in_email"]["amount_due"] == 2 * 12000

    expected_failures = {
        "contact_not_found": "contact_not_found",
        "other_tenants_contact": "contact_not_found",
        "account_not_connected": "account_not_connected",
        "past_due_date": "invalid_due_date",
        "unknown_price": "price_not_found",
        "invalid_line_items": "invalid_line_items",
        # Stripe refuses send_invoice invoices for customers without an email: refused before Stripe.
        "no_email_or_phone": "contact_missing_email",
    }
    for name, reason in expected_failures.items():
        assert by_name[name]["event_type"] == "PaymentLinkFailed", by_name[name]
        assert by_name[name]["reason"] == reason, by_name[name]
        assert by_name[name]["retryable"] is False
        assert by_name[name]["message"]
    assert by_name["unknown_price"]["compensated"] is True
    assert by_name["unknown_price"]["failed_step"] == "items"
    assert results["11111111-2222-3333-4444-555555555555"]["reason"] == "invalid_event"

    # Stripe holds exactly the two created invoices, finalised; no draft survived the failed request.
    invoices = await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")
    assert sorted(i["status"] for i in invoices) == ["open", "open"]
    assert await stripe_objects(stripe_api_base, other.stripe_account, "customer") == []
    # Bob's quote-laden email did not widen the search: he got a customer of his own. The contact without
    # an email got none.
    customers = await stripe_objects(stripe_api_base, tenant.stripe_account, "customer")
    assert len(customers) == 2
    linked = await db["contacts"].find_one({"_id": tenant.contacts["bob"]["_id"]})
    assert linked["stripe_customers"][tenant.stripe_account] in {c["id"] for c in customers}
    # Both unparseable messages are dead letters with their raw bytes.
    letters = [d async for d in db["dead_letters"].find({})]
    raws = {bytes(d["raw"]) for d in letters}
    assert b"\xff\xfe garbage" in raws
    assert len([d for d in letters if d["reason"] == "invalid_event"]) == 2
    assert len([d for d in letters if d["reason"] == "invalid_line_items"]) == 1


async def test_a_contact_without_an_email_leaves_nothing_in_stripe_and_says_what_to_fix(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = database(mongo_client, stack)
    contacts = {
        "nobody": {"name": "No Email Or Phone"},
        "phone_only": {"name": "Phone Only", "phone": "+441234567890"},
        "blank": {"name": "Blank Email", "email": "  "},
        "linked": {"name": "Linked Before"},
    }
    tenant = await seed_tenant(db, stripe_api_base, contacts)
    linked_id = tenant.contacts["linked"]["_id"]
    links = {tenant.stripe_account: "cus_linkedbefore"}
    await db["contacts"].update_one({"_id": linked_id}, {"$set": {"stripe_customers": links}})
    requests = {name: request(tenant, name) for name in contacts}
    async with running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, list(requests.values()))
        results = await collector.wait_for({body["event_id"] for body in requests.values()})

    for body in requests.values():
        failed = results[body["event_id"]]
        assert (failed["event_type"], failed["reason"]) == ("PaymentLinkFailed", "contact_missing_email"), failed
        assert (failed["failed_step"], failed["retryable"], failed["compensated"]) == ("customer", False, False)
        assert failed["message"] == (
            f"contact {body['contact_id']} of account {tenant.account_id} has no email, which Stripe needs to "
            "invoice the customer: add an email to the contact, then request the link again"
        )
    # Audited on the emulator: no customer and no invoice on the tenant's account; no new CRM link.
    for kind in ("customer", "invoice", "invoiceitem"):
        assert await stripe_objects(stripe_api_base, tenant.stripe_account, kind) == [], kind
    stored = {c["_id"]: c async for c in db["contacts"].find({"account_id": tenant.account_id})}
    assert [c.get("stripe_customers") for c in stored.values() if c["_id"] != linked_id] == [None] * 3
    assert stored[linked_id]["stripe_customers"] == links


async def test_currency_in_any_case_is_invoiced_in_lower_case_and_an_unknown_one_never_reaches_stripe(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, {"ada": CONTACTS["ada"]})
    upper, unknown = request(tenant, "ada", currency="EUR"), request(tenant, "ada", currency="xyz")
    async with running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, [upper, unknown])
        results = await collector.wait_for({upper["event_id"], unknown["event_id"]})

    created = results[upper["event_id"]]
    assert (created["event_type"], created["currency"]) == ("PaymentLinkCreated", "eur"), created
    refused = results[unknown["event_id"]]
    assert (refused["reason"], refused["failed_step"]) == ("invalid_event", "validate"), refused
    assert "got xyz" in refused["message"]
    invoices = await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")
    assert [(i["id"], i["currency"]) for i in invoices] == [(created["invoice_id"], "eur")]


async def test_duplicate_delivery_makes_one_invoice_and_one_result(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, {"ada": CONTACTS["ada"]})
    body = request(tenant, "ada")
    async with running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, [body, body, body])
        await collector.wait_for({body["event_id"]})
        # A later duplicate, after the first finished, still publishes nothing new.
        await produce(stack, [body])
        marker = request(tenant, "ada")
        await produce(stack, [marker])
        await collector.wait_for({marker["event_id"]})
    assert len(await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")) == 2
    distinct = {
        json.loads(r.value)["event_id"]
        for r in collector.records
        if json.loads(r.value)["payment_link_id"] == body["event_id"]
    }
    assert len(distinct) == 1


async def test_shortener_down_falls_back_to_the_hosted_url(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, shortener_base: str
) -> None:
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, {"ada": CONTACTS["ada"]})
    async with httpx.AsyncClient(base_url=shortener_base) as control:
        fault = await control.post("/_emulator/faults", json={"path": "/shorten", "status": 503})
        fault.raise_for_status()
        try:
            body = request(tenant, "ada")
            async with running_pipeline(stack), ResultCollector(stack) as collector:
                await produce(stack, [body])
                result = (await collector.wait_for({body["event_id"]}))[body["event_id"]]
        finally:
            await control.delete("/_emulator/faults")
    assert result["event_type"] == "PaymentLinkCreated"
    assert result["short_url"] is None
    assert result["url"] == result["hosted_invoice_url"]


async def test_stripe_outage_ends_retryable_and_replay_creates_the_link(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    from consumer.cli.replay import replay_requests

    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, {"ada": CONTACTS["ada"]})
    body = request(tenant, "ada")
    async with httpx.AsyncClient(base_url=stripe_api_base) as control:
        await control.post("/_emulator/faults", json={"method": "POST", "path": "/v1/invoices", "status": 500})
        try:
            async with running_pipeline(stack), ResultCollector(stack) as collector:
                await produce(stack, [body])
                failed = (await collector.wait_for({body["event_id"]}))[body["event_id"]]
        finally:
            await control.delete("/_emulator/faults")
    assert failed["reason"] == "stripe_unavailable"
    assert failed["retryable"] is True
    assert failed["failed_step"] == "draft"

    assert await replay_requests(stack, [body["event_id"]]) == 0
    async with running_pipeline(stack, workers=0), ResultCollector(stack) as collector:
        await collector.wait_for({body["event_id"]})
        while collector.results[body["event_id"]]["event_type"] != "PaymentLinkCreated":
            collector.results.pop(body["event_id"])
            await collector.wait_for({body["event_id"]})
    created = collector.results[body["event_id"]]
    assert created["invoice_id"].startswith("in_")
    assert len(await stripe_objects(stripe_api_base, tenant.stripe_account, "customer")) == 1
