"""The saga's happy paths: which customer, which draft, which items, which URL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain.events import PaymentLinkCreated
from domain.saga_record import SagaStatus
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, STRIPE_ACCOUNT, World, make_request


async def created(world: World, **overrides: object) -> PaymentLinkCreated:
    result = await world.saga().run(make_request(**overrides))
    assert isinstance(result, PaymentLinkCreated), result
    return result


async def test_creates_customer_draft_items_and_finalised_invoice() -> None:
    world = World()
    result = await created(world)
    invoice = world.billing.invoices[result.invoice_id]
    assert result.model_dump(exclude={"event_id", "occurred_at", "customer_id", "invoice_id", "invoice_number"}) == {
        "event_type": "PaymentLinkCreated",
        "schema_version": 1,
        "payment_link_id": REQUEST_ID,
        "correlation_id": "corr-1",
        "account_id": ACCOUNT,
        "contact_id": CONTACT,
        "stripe_account": STRIPE_ACCOUNT,
        "status": "open",
        "amount_due": 2 * 1500 + 5000,
        "currency": "usd",
        "due_date": date(2030, 1, 29),
        "hosted_invoice_url": f"https://invoice.stripe.test/{result.invoice_id}",
        "invoice_pdf": f"https://invoice.stripe.test/{result.invoice_id}/pdf",
        "short_url": result.short_url,
        "url": result.short_url,
        "attempt": 1,
    }
    assert invoice.status == "open" and invoice.number == result.invoice_number
    assert invoice.params["metadata"] == {
        "deal": "D-42",
        "payment_link_id": REQUEST_ID,
        "account_id": ACCOUNT,
        "contact_id": CONTACT,
        "note_id": "note-9",
    }
    assert invoice.params["description"] == "Payment requested from Ada Lovelace"
    assert datetime.fromtimestamp(invoice.params["due_date"], UTC) == datetime(2030, 1, 29, 12, tzinfo=UTC)
    assert [item["quantity"] for item in invoice.items] == [2, 1]
    assert world.billing.created == {"customer": 1, "invoice": 1, "invoice_item": 2}
    assert world.crm.linked_customer(CONTACT, STRIPE_ACCOUNT) == result.customer_id
    assert result.short_url is not None and result.short_url.startswith("https://pl.test/")
    assert world.shortener.calls == [result.hosted_invoice_url]
    assert world.outbox.ordered == [result]
    record = world.store.record(REQUEST_ID)
    assert record.status is SagaStatus.CREATED and record.result == result


async def test_new_customer_carries_the_contact_details() -> None:
    world = World()
    world.crm.add_contact(
        ACCOUNT, "c2", first_name="Grace", last_name="Hopper", email="grace@example.com", address={"city": "NYC"}
    )
    result = await created(world, contact_id="c2")
    customer = world.billing.customers[result.customer_id]
    assert customer["name"] == "Grace Hopper" and customer["address"] == {"city": "NYC"}
    assert customer["email"] == "grace@example.com" and "phone" not in customer


async def test_uses_the_customer_already_linked_for_this_stripe_account() -> None:
    world = World()
    linked = world.billing.add_customer(STRIPE_ACCOUNT, email="ada@example.com")
    world.crm.contacts[CONTACT]["stripe_customers"] = {STRIPE_ACCOUNT: linked, "acct_other": "cus_other"}
    result = await created(world)
    assert result.customer_id == linked
    assert "search_customers" not in world.billing.calls and world.billing.created["customer"] == 0
    assert "link_customer" not in world.crm.calls


async def test_finds_an_existing_customer_by_email_or_phone_and_links_it() -> None:
    world = World()
    existing = world.billing.add_customer(STRIPE_ACCOUNT, email="ada@work.example", phone="+15550100")
    world.billing.add_customer("acct_other", email="ada@example.com")
    result = await created(world)
    assert result.customer_id == existing and world.billing.created["customer"] == 0
    assert world.crm.linked_customer(CONTACT, STRIPE_ACCOUNT) == existing


async def test_a_customer_linked_concurrently_wins() -> None:
    world = World()
    rival = world.billing.add_customer(STRIPE_ACCOUNT, name="rival", email="rival@example.com")
    original_link = world.crm.link_customer

    async def racing_link(account_id: str, contact_id: str, stripe_account: str, customer_id: str) -> str:
        world.crm.contacts[CONTACT]["stripe_customers"] = {STRIPE_ACCOUNT: rival}
        return await original_link(account_id, contact_id, stripe_account, customer_id)

    world.crm.link_customer = racing_link  # type: ignore[method-assign]
    result = await created(world)
    assert result.customer_id == rival
    assert world.billing.invoices[result.invoice_id].params["customer"] == rival


async def test_concurrent_requests_for_one_contact_converge_on_one_customer() -> None:
    world = World()
    first = await created(world)
    world.crm.contacts[CONTACT].pop("stripe_customers")  # as if the second request read before the link
    second = await created(world, event_id="5f0c1c52-0d8a-4f7e-8d3b-6c0d2f1e9a77")
    assert first.customer_id == second.customer_id and world.billing.created["customer"] == 1


async def test_explicit_description_due_date_and_no_note() -> None:
    world = World()
    result = await created(
        world, description="Consulting, March", days_until_due=None, due_date="2030-03-01", note_id=None
    )
    params = world.billing.invoices[result.invoice_id].params
    assert params["description"] == "Consulting, March" and "note_id" not in params["metadata"]
    assert result.due_date == date(2030, 3, 1)


async def test_default_description_falls_back_to_the_email_without_a_name() -> None:
    world = World()
    world.crm.add_contact(ACCOUNT, "c3", email="x@y.z")
    by_email = await created(world, contact_id="c3")
    assert world.billing.invoices[by_email.invoice_id].params["description"] == "Payment requested from x@y.z"


@pytest.mark.parametrize("mode", ["none", "raise"])
async def test_a_failing_shortener_falls_back_to_the_long_url(mode: str) -> None:
    world = World()
    world.shortener.mode = mode
    result = await created(world)
    assert result.short_url is None and result.url == result.hosted_invoice_url


async def test_a_zero_total_invoice_is_reported_paid() -> None:
    world = World()
    world.billing.add_price(STRIPE_ACCOUNT, "price_free", 0, "usd")
    result = await created(world, line_items=[{"price_id": "price_free"}])
    assert (result.status, result.amount_due) == ("paid", 0)


@pytest.mark.parametrize("items_per_call", [1, 2, 3, 250])
async def test_items_are_added_in_order_in_batches(items_per_call: int) -> None:
    world = World(items_per_call=items_per_call)
    lines = [{"description": f"line {index}", "amount": 100 + index} for index in range(7)]
    result = await created(world, line_items=lines)
    invoice = world.billing.invoices[result.invoice_id]
    assert [item["description"] for item in invoice.items] == [f"line {index}" for index in range(7)]
    assert world.billing.calls.count("add_invoice_items") == -(-7 // items_per_call)
    assert result.amount_due == sum(100 + index for index in range(7))
