"""A contact without an email Stripe can take fails at the customer step, before any Stripe call (ADR 0014).

Stripe refuses a ``send_invoice`` invoice to a customer without an email; paylink says so itself, with what
to fix, instead of creating a customer and letting Stripe refuse the draft.
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.events import PaymentLinkCreated, PaymentLinkFailed
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, STRIPE_ACCOUNT, World, make_request

NO_EMAIL = (
    f"contact {CONTACT} of account {ACCOUNT} has no email, which Stripe needs to invoice the customer: "
    "add an email to the contact, then request the link again"
)


def contact_without_email(world: World, **fields: Any) -> None:
    world.crm.add_contact(ACCOUNT, CONTACT, name="Ada Lovelace", **fields)


async def failed(world: World) -> PaymentLinkFailed:
    result = await world.saga().run(make_request())
    assert isinstance(result, PaymentLinkFailed), result
    return result


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="neither-email-nor-phone"),
        pytest.param({"phone": "+15550100"}, id="phone-only"),
        pytest.param({"email": "   "}, id="blank-email"),
    ],
)
async def test_a_contact_without_an_email_fails_before_any_stripe_call(fields: dict[str, Any]) -> None:
    world = World()
    contact_without_email(world, **fields)
    # A customer with the contact's phone exists: it is not looked for either.
    world.billing.add_customer(STRIPE_ACCOUNT, email="someone@example.com", phone="+15550100")

    result = await failed(world)

    assert (result.reason, result.failed_step, result.retryable, result.compensated) == (
        "contact_missing_email",
        "customer",
        False,
        False,
    )
    assert result.message == NO_EMAIL
    assert world.billing.calls == [] and world.billing.keys_used == []
    assert not world.billing.created
    assert "link_customer" not in world.crm.calls
    assert world.outbox.ordered == [result]


async def test_an_email_longer_than_stripe_takes_fails_the_same_way_and_names_its_length() -> None:
    world = World()
    contact_without_email(world, email="e" * 513)

    result = await failed(world)

    assert (result.reason, result.failed_step) == ("contact_missing_email", "customer")
    assert result.message == (
        f"contact {CONTACT} of account {ACCOUNT} has an email of 513 characters, more than Stripe's 512: "
        "correct the contact's email, then request the link again"
    )
    assert "e" * 100 not in result.message  # the email itself is not echoed
    assert world.billing.calls == []


async def test_an_email_at_stripes_limit_is_searched_and_given_to_the_new_customer() -> None:
    world = World()
    contact_without_email(world, email="e" * 512, phone="+15550100")

    result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkCreated), result
    assert world.billing.customers[result.customer_id]["email"] == "e" * 512
    assert world.billing.calls[:2] == ["search_customers", "create_customer"]


async def test_a_contact_linked_to_a_customer_still_needs_an_email() -> None:
    world = World()
    linked = world.billing.add_customer(STRIPE_ACCOUNT, email="ada@example.com")
    contact_without_email(world, stripe_customers={STRIPE_ACCOUNT: linked})

    result = await failed(world)

    assert (result.reason, result.message) == ("contact_missing_email", NO_EMAIL)
    assert world.billing.calls == []


async def test_an_unconnected_account_is_reported_before_a_missing_email() -> None:
    world = World()
    world.crm.add_account("acc_unconnected", None)
    world.crm.add_contact("acc_unconnected", CONTACT, name="Ada Lovelace")

    result = await world.saga().run(make_request(account_id="acc_unconnected"))

    assert isinstance(result, PaymentLinkFailed) and result.reason == "account_not_connected"


async def test_once_the_contact_has_an_email_a_replay_creates_the_link() -> None:
    world = World()
    contact_without_email(world)
    await failed(world)

    world.crm.contacts[CONTACT]["email"] = "ada@example.com"
    replayed = await world.saga().replay(REQUEST_ID)

    assert isinstance(replayed, PaymentLinkCreated), replayed
    assert world.store.record(REQUEST_ID).attempt == 2
    assert world.billing.customers[replayed.customer_id]["email"] == "ada@example.com"
    assert world.billing.created == {"customer": 1, "invoice": 1, "invoice_item": 2}


async def test_a_customer_found_by_the_contacts_email_is_reused_without_creating_one() -> None:
    world = World()
    existing = world.billing.add_customer(STRIPE_ACCOUNT, email="ada@example.com")

    result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkCreated) and result.customer_id == existing
    assert world.billing.calls[0] == "search_customers" and not world.billing.created["customer"]
