"""A saga resumed after Stripe forgot its idempotency keys duplicates nothing (ADRs 0016, 0018).

Finalise and shorten are not saved on their own: their outcome goes in with the result. So a saga that
finalised its invoice and then stopped (here: every finalise answer lost, retries exhausted) has a stored
record without the finalised invoice. Resumed after the keys expired (the emulator forgets them on
demand, as Stripe does after 24 hours), the finalise goes out again as a new request: it must end on the
same invoice, with the same lines, and no second customer or invoice.

The customer, the draft's adoption and the lines ride unsaved too (ADR 0018): a resumed pass asks Stripe
for the draft of its link and the lines on it instead of sending the creates again, so it needs no key.
"""

from __future__ import annotations

from typing import Any

import httpx
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.integration.harness import ResultCollector, produce, request, running_pipeline, seed_tenant, stripe_objects


async def test_a_replay_after_the_keys_expired_finalises_the_same_invoice_once(
    pipeline_stack: StackFactory, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    from consumer.cli.replay import replay_requests

    stack: Settings = await pipeline_stack(retry_attempts=2)
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, {"ada": {"name": "Ada", "email": "ada@example.com"}})
    body = request(
        tenant, "ada", line_items=[{"description": "Setup", "amount": 5000}, {"description": "B", "amount": 7}]
    )
    lost_answer = {"method": "POST", "path": "/v1/invoices/{id}/finalize", "status": 500, "phase": "after"}
    async with httpx.AsyncClient(base_url=stripe_api_base) as control:
        (await control.post("/_emulator/faults", json=lost_answer)).raise_for_status()
        try:
            async with running_pipeline(stack), ResultCollector(stack) as collector:
                await produce(stack, [body])
                failed = (await collector.wait_for({body["event_id"]}))[body["event_id"]]
        finally:
            await control.delete("/_emulator/faults")
        assert (failed["reason"], failed["retryable"], failed["failed_step"]) == (
            "stripe_unavailable",
            True,
            "finalise",
        )
        [invoice] = await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")
        assert invoice["status"] == "open"  # finalised by the lost requests, unknown to the saga record
        expired = await control.post("/_emulator/idempotency_keys/expire", json={"account": tenant.stripe_account})
        assert expired.json()["expired"] > 0

    assert await replay_requests(stack, [body["event_id"]]) == 0
    async with running_pipeline(stack, workers=0), ResultCollector(stack) as collector:
        await collector.wait_for({body["event_id"]})
        while collector.results[body["event_id"]]["event_type"] != "PaymentLinkCreated":
            collector.results.pop(body["event_id"])
            await collector.wait_for({body["event_id"]})
    created = collector.results[body["event_id"]]
    assert created["invoice_id"] == invoice["id"] and created["amount_due"] == 5007
    assert len(await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")) == 1
    assert len(await stripe_objects(stripe_api_base, tenant.stripe_account, "customer")) == 1
    assert len(await stripe_objects(stripe_api_base, tenant.stripe_account, "invoiceitem")) == 2


async def test_lost_answers_of_the_creates_are_resumed_from_stripe_not_posted_again(
    pipeline_stack: StackFactory, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    stack: Settings = await pipeline_stack(retry_attempts=5)
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, {"ada": {"name": "Ada", "email": "ada@example.com"}})
    body = request(
        tenant,
        "ada",
        line_items=[
            {"description": "A", "amount": 5000, "quantity": 2},
            {"description": "B", "amount": 7, "quantity": 3},
        ],
    )
    account = tenant.stripe_account
    # The draft's and the first line's answers are lost once each: Stripe acted, the worker never knew.
    # (A prefix: the first POST under /v1/invoices is the draft's, under /v1/invoiceitems the first line's.)
    lost = [
        {"method": "POST", "path": path, "status": 500, "phase": "after", "count": 1, "account": account}
        for path in ("/v1/invoices", "/v1/invoiceitems")
    ]
    async with httpx.AsyncClient(base_url=stripe_api_base) as control:
        before = (await control.get("/_emulator/stats")).json()["requests"]
        try:
            for fault in lost:
                (await control.post("/_emulator/faults", json=fault)).raise_for_status()
            async with running_pipeline(stack), ResultCollector(stack) as collector:
                await produce(stack, [body])
                created = (await collector.wait_for({body["event_id"]}))[body["event_id"]]
        finally:
            await control.delete("/_emulator/faults")
        after = (await control.get("/_emulator/stats")).json()["requests"]

    assert created["event_type"] == "PaymentLinkCreated" and created["amount_due"] == 10_021
    assert len(await stripe_objects(stripe_api_base, account, "invoice")) == 1
    assert len(await stripe_objects(stripe_api_base, account, "invoiceitem")) == 2
    sent = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    # One draft POST and one per line: the resumed passes listed the drafts and read the lines instead.
    assert sum(n for key, n in sent.items() if key.startswith("POST /v1/invoices ")) == 1
    assert sum(n for key, n in sent.items() if key.startswith("POST /v1/invoiceitems ")) == 2
    assert sum(n for key, n in sent.items() if key.startswith("GET /v1/invoices ")) >= 1
    assert sum(n for key, n in sent.items() if key.startswith("GET /v1/invoices/{id}/lines ")) >= 1
