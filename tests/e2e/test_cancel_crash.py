"""A worker SIGKILLed between a cancel's void and its saved result: the next worker resumes the cancel,
voids again with the same idempotency key (Stripe replays the first void) and publishes one result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, wait_until
from tests.integration.cli_helpers import stripe_fault
from tests.integration.harness import produce, request, seed_tenant
from tests.integration.test_cancel_pipeline import ADA, Events, cancel_of, invoice_status


async def idempotency_keys(stripe_base: str, account: str) -> int:
    """How many idempotency keys the emulator holds for ``account`` (a POST with a new key adds one)."""
    async with httpx.AsyncClient(base_url=stripe_base) as control:
        listing = await control.get("/_emulator/objects", params={"account": account, "type": "invoice"})
        return int(listing.json()["idempotency_keys"])


async def test_a_worker_killed_between_the_void_and_the_result_voids_once_and_answers_once(
    pipeline_stack: StackFactory, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    stack = await pipeline_stack()
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, ADA)
    body = request(tenant, "ada")
    worker = PaylinkProcess("worker", stack, tmp_path).start()
    relay = PaylinkProcess("relay", stack, tmp_path).start()
    try:
        async with Events(stack) as events:
            await produce(stack, [body])
            created = await events.result_of(body["event_id"])
            cancel = cancel_of(tenant, created)
            # The void executes, then its answer is held back long enough to kill the worker waiting for it.
            held = {"path": "/v1/invoices/{id}/void", "method": "POST", "phase": "after", "latency_ms": 60_000}
            async with stripe_fault(stripe_api_base, tenant.stripe_account, count=1, **held):
                await produce(stack, [cancel])

                async def voided_in_stripe() -> bool:
                    return await invoice_status(stripe_api_base, tenant, created["invoice_id"]) == "void"

                await wait_until(voided_in_stripe, 30, "the void to reach Stripe")
                keys_before = await idempotency_keys(stripe_api_base, tenant.stripe_account)
                worker.kill()
            assert not events.about(cancel["event_id"])  # no result was saved before the kill
            worker = PaylinkProcess("worker", stack, tmp_path).start()
            answer = await events.answer_to(cancel["event_id"], timeout_s=90)

        assert answer["event_type"] == "PaymentLinkVoided", answer
        assert (answer["source"], answer["invoice_id"]) == ("cancel", created["invoice_id"])
        # The resumed cancel sent its void again with the same key (no new key): Stripe replayed the first.
        assert await idempotency_keys(stripe_api_base, tenant.stripe_account) == keys_before
        assert {e["event_id"] for e in events.about(cancel["event_id"])} == {answer["event_id"]}
        stored = await db["cancels"].find_one({"_id": cancel["event_id"]})
        assert stored is not None and stored["status"] == "done" and stored["attempt"] == 1
    finally:
        worker.terminate()
        relay.terminate()
