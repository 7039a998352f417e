"""Contract of the two reads a resumed saga makes (``Billing.find_draft_invoice``,
``Billing.invoice_line_indexes``, ADR 0018): the same tests on ``FakeBilling`` and on ``StripeBilling``
over the Stripe emulator, with the harness of ``test_billing_contract``."""

from __future__ import annotations

import uuid

from tests.contract.test_billing_contract import (
    BillingHarness,
    _key,
    amount_item,
    draft_for,
    new_customer,
    price_item,
)


async def test_find_draft_invoice_finds_the_draft_of_the_link_only(stripe: BillingHarness) -> None:
    customer_id, other_customer = await new_customer(stripe), await new_customer(stripe)
    mine, theirs = draft_for(customer_id), draft_for(customer_id)
    link = mine.metadata["payment_link_id"]
    await stripe.billing.create_draft_invoice(stripe.account, theirs, _key("draft"))
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, mine, _key("draft"))
    await stripe.billing.create_draft_invoice(stripe.account, draft_for(other_customer), _key("draft"))

    assert await stripe.billing.find_draft_invoice(stripe.account, customer_id, link) == invoice_id
    assert await stripe.billing.find_draft_invoice(stripe.account, other_customer, link) is None
    assert await stripe.billing.find_draft_invoice(stripe.account, customer_id, str(uuid.uuid4())) is None
    assert await stripe.billing.find_draft_invoice(stripe.other, customer_id, link) is None  # another account


async def test_find_draft_invoice_skips_a_finalised_or_deleted_invoice(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    finalised, deleted = draft_for(customer_id), draft_for(customer_id)
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, finalised, _key("draft"))
    await stripe.billing.add_invoice_items(stripe.account, invoice_id, [amount_item(0, customer_id, 900, 1)], _key("i"))
    await stripe.billing.finalize_invoice(stripe.account, invoice_id, _key("finalise"))
    gone = await stripe.billing.create_draft_invoice(stripe.account, deleted, _key("draft"))
    await stripe.billing.delete_draft(stripe.account, gone)

    for draft in (finalised, deleted):
        link = draft.metadata["payment_link_id"]
        assert await stripe.billing.find_draft_invoice(stripe.account, customer_id, link) is None


async def test_invoice_line_indexes_are_the_request_lines_on_the_draft(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    price_id = await stripe.add_price(stripe.account, 1500, "usd")
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id), _key("draft"))
    assert await stripe.billing.invoice_line_indexes(stripe.account, invoice_id) == set()

    bulk = [price_item(0, customer_id, price_id, 2), price_item(1, customer_id, price_id, 1)]  # one add_lines call
    await stripe.billing.add_invoice_items(stripe.account, invoice_id, bulk, _key("items"))
    await stripe.billing.add_invoice_items(stripe.account, invoice_id, [amount_item(2, customer_id, 50, 3)], _key("i"))

    assert await stripe.billing.invoice_line_indexes(stripe.account, invoice_id) == {0, 1, 2}
