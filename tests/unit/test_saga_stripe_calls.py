"""What the saga sends to Stripe (keys, customers, items, descriptions) and the messages users read.

The fake Billing refuses what Stripe refuses (missing keys, an item's customer other than the invoice's,
another account's invoice) and records every POST's key, so these tests see the calls as Stripe would.
"""

from __future__ import annotations

from typing import Any

from domain.billing import NewCustomer
from domain.crm import Contact
from domain.errors import PermanentError, Reason
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.keys import customer_key
from domain.saga import PaymentLinkSaga
from domain.saga_record import SagaRecord
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, STRIPE_ACCOUNT, World, make_request

LINES: list[dict[str, Any]] = [
    {"price_id": "price_basic", "quantity": 2},
    {"description": "a", "amount": 10},
    {"description": "b", "amount": 20, "quantity": 3},
]
CUSTOMER_PARAMS = {
    "metadata": {"account_id": ACCOUNT, "contact_id": CONTACT},
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+15550100",
}


async def test_every_post_uses_the_documented_key() -> None:
    world = World(items_per_call=2)

    result = await world.saga().run(make_request(line_items=LINES))

    assert isinstance(result, PaymentLinkCreated)
    prefix = f"paylink-{REQUEST_ID}-r0"
    assert world.billing.keys_used == [
        ("create_customer", customer_key(STRIPE_ACCOUNT, ACCOUNT, CONTACT, CUSTOMER_PARAMS)),
        ("create_draft_invoice", f"{prefix}-draft"),
        ("add_lines", f"{prefix}-items-0-2"),  # lines 0 and 1 in one bulk call, keyed by the batch
        ("add_invoice_item", f"{prefix}-item-2"),  # 3 x 20 needs unit_amount_decimal: a call of its own
        ("finalize_invoice", f"{prefix}-finalise"),
    ]


async def test_the_new_customer_carries_the_contact_and_every_item_names_it_and_its_line() -> None:
    world = World()

    result = await world.saga().run(make_request(line_items=LINES))

    assert isinstance(result, PaymentLinkCreated)
    customer = world.billing.customers[result.customer_id]
    assert customer == {**CUSTOMER_PARAMS, "stripe_account": STRIPE_ACCOUNT}
    items = world.billing.invoices[result.invoice_id].items
    assert [(item["customer"], item["metadata"]) for item in items] == [
        (result.customer_id, {"line_index": str(index)}) for index in range(3)
    ]
    assert result.amount_due == 2 * 1500 + 10 + 3 * 20


async def test_an_existing_customer_with_the_contact_email_is_reused() -> None:
    world = World()
    existing = world.billing.add_customer(STRIPE_ACCOUNT, email="ada@example.com", phone="+4420000000")

    result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkCreated) and result.customer_id == existing
    assert world.billing.created["customer"] == 0
    assert world.crm.linked_customer(CONTACT, STRIPE_ACCOUNT) == existing


async def test_a_customer_linked_meanwhile_wins_and_is_logged(caplog: Any) -> None:
    world = World()
    world.crm.add_contact(ACCOUNT, CONTACT, name="Ada", email="ada@example.com", stripe_customers={})
    original_link = world.crm.link_customer

    async def link_after_another_worker(account_id: str, contact_id: str, stripe_account: str, customer_id: str) -> str:
        world.crm.contacts[contact_id]["stripe_customers"] = {stripe_account: "cus_first"}
        return await original_link(account_id, contact_id, stripe_account, customer_id)

    world.crm.link_customer = link_after_another_worker  # type: ignore[method-assign]
    world.billing.customers["cus_first"] = {"stripe_account": STRIPE_ACCOUNT, "name": "Ada", "email": "ada@old.example"}

    with caplog.at_level("INFO", logger="paylink.saga"):
        result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkCreated) and result.customer_id == "cus_first"
    [record] = [r for r in caplog.records if r.getMessage() == "another customer was linked first; using it"]
    assert (record.payment_link_id, record.step) == (REQUEST_ID, "customer")


async def test_a_normal_run_logs_no_race_and_no_reused_event_id(caplog: Any) -> None:
    world = World()
    with caplog.at_level("INFO", logger="paylink.saga"):
        await world.saga().run(make_request())
        await world.saga().run(make_request())  # a duplicate with the same body
    assert [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"] == []


async def test_a_reused_event_id_with_another_body_is_logged(caplog: Any) -> None:
    world = World()
    await world.saga().run(make_request())
    with caplog.at_level("WARNING", logger="paylink.saga"):
        await world.saga().run(make_request(currency="eur", line_items=[{"price_id": "price_eur"}]))
    [record] = caplog.records
    assert record.getMessage() == "event_id reused with a different request; the first one wins"
    assert (record.payment_link_id, record.account_id, record.attempt) == (REQUEST_ID, ACCOUNT, 1)


async def test_the_default_description_is_bounded_to_500_characters() -> None:
    world = World()
    world.crm.add_contact(ACCOUNT, CONTACT, name="N" * 600, email="ada@example.com")

    result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkCreated)
    description = world.billing.invoices[result.invoice_id].params["description"]
    assert description == ("Payment requested from " + "N" * 600)[:499] + "…"


async def test_without_items_per_call_each_line_is_its_own_call() -> None:
    world = World()
    saga = PaymentLinkSaga(
        crm=world.crm,
        billing=world.billing,
        shortener=world.shortener,
        store=world.store,
        outbox=world.outbox,
        clock=world.clock,
        ids=world.ids,
    )
    await saga.run(make_request(line_items=LINES))
    assert world.billing.calls.count("add_invoice_items") == 3


async def test_an_invoice_finalised_without_a_hosted_url_fails_and_is_voided(caplog: Any) -> None:
    world = World()
    world.billing.hosted_urls = False

    with caplog.at_level("INFO", logger="paylink.saga"):
        result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.failed_step, result.compensated) == ("stripe_invalid_request", "finalise", True)
    assert result.message == "Stripe finalised the invoice without a hosted URL"
    assert [invoice.status for invoice in world.billing.invoices.values()] == ["void"]
    [record] = [r for r in caplog.records if r.getMessage() == "saga failed permanently"]
    assert (record.payment_link_id, record.account_id, record.attempt) == (REQUEST_ID, ACCOUNT, 1)
    assert (record.reason, record.step) == ("stripe_invalid_request", "finalise")


async def test_lookup_failures_name_what_is_missing() -> None:
    world = World()
    missing = await world.saga().run(make_request(contact_id="nobody", event_id="11111111-1111-4111-8111-111111111111"))
    assert isinstance(missing, PaymentLinkFailed)
    assert missing.message == f"contact nobody not found in account {ACCOUNT}"
    world.crm.add_account(ACCOUNT, None)
    unconnected = await world.saga().run(make_request())
    assert isinstance(unconnected, PaymentLinkFailed) and unconnected.reason == "account_not_connected"
    assert unconnected.message == (
        f"account {ACCOUNT} has no connected Stripe account (accounts.stripe.account_id is missing)"
    )


async def test_a_failed_compensation_is_logged_as_an_error_naming_the_invoice(caplog: Any) -> None:
    world = World()
    world.billing.hosted_urls = False
    world.billing.faults.add("void_invoice", PermanentError(Reason.STRIPE_INVALID_REQUEST, "void refused"))

    with caplog.at_level("INFO", logger="paylink.saga"):
        result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkFailed) and not result.compensated
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "compensation failed; the invoice needs manual cleanup"
    [invoice_id] = world.billing.invoices
    assert (record.payment_link_id, record.invoice_id, record.problem) == (REQUEST_ID, invoice_id, "void refused")


async def test_a_replay_is_logged(caplog: Any) -> None:
    world = World()
    await world.saga().run(make_request(contact_id="nobody"))
    with caplog.at_level("INFO", logger="paylink.saga"):
        await world.saga().prepare_replay(REQUEST_ID)
    [record] = [r for r in caplog.records if r.getMessage() == "saga re-opened for replay"]
    assert (record.payment_link_id, record.account_id, record.attempt) == (REQUEST_ID, ACCOUNT, 2)


async def test_a_shortener_that_raises_is_logged_with_its_traceback(caplog: Any) -> None:
    world = World()
    world.shortener.mode = "raise"
    with caplog.at_level("WARNING", logger="paylink.saga"):
        result = await world.saga().run(make_request())
    assert isinstance(result, PaymentLinkCreated) and result.url == result.hosted_invoice_url
    [record] = caplog.records
    assert record.getMessage() == "shortener raised; using the long URL"
    assert (record.payment_link_id, record.step) == (REQUEST_ID, "shorten")
    assert record.exc_info is not None and str(record.exc_info[1]) == "shortener exploded"


def test_a_saga_record_stores_the_request_in_json_form() -> None:
    request = make_request(due_date="2030-02-01", days_until_due=None)
    record = SagaRecord.start(request, request.occurred_at)
    assert record.request == request.model_dump(mode="json")
    assert record.request["due_date"] == "2030-02-01" and record.request["occurred_at"] == "2030-01-15T09:00:00Z"


def test_customer_params_of_the_world_contact() -> None:
    contact = Contact(CONTACT, ACCOUNT, name="Ada Lovelace", email="ada@example.com", phone="+15550100")
    assert NewCustomer.from_contact(contact).stripe_params() == CUSTOMER_PARAMS
