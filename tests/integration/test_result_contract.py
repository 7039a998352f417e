"""docs/contract.md and docs/guarantees.md, "what consumers of results see", one test per sentence that
can be tested, on the real stack (worker, relay, Kafka, FerretDB, the Stripe emulator):

1. a duplicate of a finished request re-publishes its stored result, with the same ``event_id``
   (so consumers must dedupe on ``event_id``);
2. ``attempt`` is on every result: 1 for a first run, ``Created`` included;
3. a ``PaymentLinkFailed`` with ``retryable=true`` is not final: a replay later publishes
   ``PaymentLinkCreated`` for the same ``payment_link_id``, with a new ``event_id`` and a higher
   ``attempt`` (the latest wins);
4. a ``PaymentLinkFailed`` with ``retryable=false`` stays the answer: a duplicate gets the same one back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.integration.cli_helpers import paylink, stripe_fault
from tests.integration.harness import ResultCollector, produce, request, running_pipeline, seed_tenant

CONTACTS = {"ada": {"name": "Ada Lovelace", "email": "ada@example.com"}, "bob": {"name": "Bob", "email": "b@x.io"}}


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(retry_attempts=2)


def copies(collector: ResultCollector, payment_link_id: str) -> list[dict[str, Any]]:
    """Every message published for one link, duplicates included, in the order read."""
    found = [json.loads(record.value) for record in collector.records]
    return [event for event in found if event["payment_link_id"] == payment_link_id]


async def test_what_consumers_of_results_see(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS)
    created, refused, flaky = request(tenant, "ada"), request(tenant, "con-missing"), request(tenant, "bob")
    outage = stripe_fault(stripe_api_base, tenant.stripe_account, method="POST", path="/v1/invoices", status=500)
    async with running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, [created, refused])
        first = await collector.wait_for({created["event_id"], refused["event_id"]})
        async with outage:
            await produce(stack, [flaky])
            failed = (await collector.wait_for({flaky["event_id"]}))[flaky["event_id"]]

        # 1 and 4: duplicates of finished requests, sent once their results were published.
        await produce(stack, [created, refused])
        await collector.wait_until(
            lambda _: all(len(copies(collector, body["event_id"])) == 2 for body in (created, refused)),
            "the re-published results",
        )
        # 3: the retryable failure is replayed once Stripe is back.
        replayed = await paylink(stack, "replay", "--event-id", flaky["event_id"])
        assert replayed.code == 0, replayed.out + replayed.err
        await collector.wait_until(
            lambda _: collector.results[flaky["event_id"]]["event_type"] == "PaymentLinkCreated", "the replay's result"
        )

    for body in (created, refused):
        original, again = copies(collector, body["event_id"])
        assert again == original, "a duplicate request re-publishes the stored result, same event_id"
    assert first[created["event_id"]]["event_type"] == "PaymentLinkCreated"
    assert first[created["event_id"]]["attempt"] == 1
    assert (first[refused["event_id"]]["retryable"], first[refused["event_id"]]["attempt"]) == (False, 1)

    assert (failed["event_type"], failed["retryable"], failed["attempt"]) == ("PaymentLinkFailed", True, 1)
    later = collector.results[flaky["event_id"]]
    assert later["event_id"] != failed["event_id"] and later["attempt"] == 2
    history = [(e["event_type"], e["attempt"]) for e in copies(collector, flaky["event_id"])]
    assert history == [("PaymentLinkFailed", 1), ("PaymentLinkCreated", 2)]
    assert max(copies(collector, flaky["event_id"]), key=lambda e: e["attempt"])["event_type"] == "PaymentLinkCreated"
