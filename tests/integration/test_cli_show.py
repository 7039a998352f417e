"""`paylink show` end to end: requests run through a real worker and relay, then `show` tells each one's
story from the stores: created, failed and compensated, retried then created, and a dead letter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import wait_until
from tests.integration.cli_helpers import paylink, stripe_fault
from tests.integration.harness import ResultCollector, produce, request, running_pipeline, seed_tenant

CONTACTS = {"ada": {"name": "Ada Lovelace", "email": "ada@example.com"}}


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(retry_attempts=4)


async def show_json(stack: Settings, ident: str) -> dict[str, Any]:
    shown = await paylink(stack, "show", ident, "--json")
    assert shown.code == 0, shown.err
    document: dict[str, Any] = json.loads(shown.out)
    return document


def steps(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["kind"], entry["step"]) for entry in document["saga"]["history"]["entries"]]


async def test_show_tells_created_compensated_retried_and_dead_lettered_stories(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS)
    created = request(tenant, "ada")
    compensated = request(tenant, "ada", line_items=[{"description": "ok", "amount": 100}, {"price_id": "price_x"}])
    retried = request(tenant, "ada", line_items=[{"description": "other", "amount": 300}])
    poisoned_id = str(uuid.uuid4())
    poisoned = json.dumps({"event_id": poisoned_id, "event_type": "PaymentLinkRequested"}).encode()
    ids = {created["event_id"], compensated["event_id"], retried["event_id"]}
    # One 500 on the finalize call (every request finalises once): the first request to get there retries.
    finalize = {"method": "POST", "path": "/v1/invoices/{id}/finalize", "status": 500, "count": 1}
    async with stripe_fault(stripe_api_base, tenant.stripe_account, **finalize), running_pipeline(stack):
        async with ResultCollector(stack) as collector:
            await produce(stack, [retried])
            await collector.wait_for({retried["event_id"]})
            await produce(stack, [created, compensated, poisoned])
            await collector.wait_for(ids)

        async def published() -> bool:
            return await db["outbox"].count_documents({}) == 0 and await db["dead_letters"].count_documents({}) == 1

        await wait_until(published, 60, "every result published and the dead letter stored")

    story = await show_json(stack, created["event_id"])
    assert story["found_as"] == "payment_link" and story["saga"]["status"] == "created"
    assert steps(story) == [
        ("done", "validate"),
        ("done", "customer"),
        ("done", "draft"),
        ("done", "items"),
        ("done", "finalise"),
        ("done", "shorten"),
        ("result", "result"),
    ]
    draft = story["saga"]["history"]["entries"][2]
    assert draft["ids"] == {"invoice_id": story["saga"]["invoice_id"]} and draft["attempt"] == 1
    [event] = story["events"]
    assert (event["event_type"], event["state"]) == ("PaymentLinkCreated", "published")
    assert isinstance(event["partition"], int) and isinstance(event["offset"], int), "offsets recorded by the relay"

    story = await show_json(stack, compensated["event_id"])
    assert story["saga"]["status"] == "failed" and story["saga"]["failure"]["compensated"] is True
    kinds = steps(story)
    assert ("failed", "items") in kinds and ("undone", "compensation") in kinds
    failed = next(e for e in story["saga"]["history"]["entries"] if e["kind"] == "failed")
    assert (failed["reason"], failed["retryable"]) == ("price_not_found", False)
    assert [e["event_type"] for e in story["events"]] == ["PaymentLinkFailed"]

    story = await show_json(stack, retried["event_id"])
    assert story["saga"]["status"] == "created"
    # The resumed pass read the lines already on the draft (items ride with the result, ADR 0018).
    assert steps(story)[4:7] == [("retry", "finalise"), ("done", "items"), ("done", "finalise")]
    retry = story["saga"]["history"]["entries"][4]
    assert (retry["reason"], retry["retryable"]) == ("stripe_unavailable", True)
    table = await paylink(stack, "show", retried["event_id"])
    assert table.code == 0, table.err
    assert "STEPS" in table.out and "retry" in table.out and "stripe_unavailable" in table.out
    assert "PaymentLinkCreated" in table.out and "published" in table.out

    [letter] = await db["dead_letters"].find({}).to_list()
    story = await show_json(stack, letter["_id"])
    assert story["found_as"] == "dead_letter" and story["payment_link_id"] == poisoned_id
    assert [d["id"] for d in story["dead_letters"]] == [letter["_id"]] and story["saga"] is None

    missing = await paylink(stack, "show", "no-such-id")
    assert missing.code == 1 and "no payment link" in missing.err
