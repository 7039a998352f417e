"""Crashes of whole processes: SIGKILLed workers mid-saga and a SIGKILLed active relay lose nothing and
duplicate nothing — every request gets exactly one result, Stripe holds exactly one invoice per link."""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import LOCAL_SHORTENER_TOKEN, LOCAL_STRIPE_TEST_KEY, Settings
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, logs_of, wait_until
from tests.integration.harness import (
    ResultCollector,
    produce,
    request,
    seed_tenant,
    stripe_latency,
    stripe_objects,
)

REQUESTS = 60
CONTACTS = {f"c{i}": {"name": f"Contact {i}", "email": f"c{i}@example.com"} for i in range(12)}


@pytest.fixture
async def stack(pipeline_stack: StackFactory, stripe_api_base: str) -> AsyncIterator[Settings]:
    settings = await pipeline_stack(max_in_flight=16)
    # Slow Stripe down so kills land between steps, not between sagas.
    async with stripe_latency(stripe_api_base, 40):
        yield settings


async def test_sigkilled_workers_and_relay_lose_and_duplicate_nothing(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS, prices={"Plan": 4900})
    rng = random.Random(7)
    bodies = [
        request(
            tenant,
            f"c{rng.randrange(len(CONTACTS))}",
            line_items=[
                {"price_id": tenant.prices["Plan"], "quantity": 1 + i % 3},
                {"description": "Extra", "amount": 1000 + i},
            ],
        )
        for i in range(REQUESTS)
    ]
    ids = {body["event_id"] for body in bodies}
    worker = PaylinkProcess("worker", stack, tmp_path).start()
    relays = [PaylinkProcess("relay", stack, tmp_path).start() for _ in range(2)]
    kills = 0

    async def sagas_at_least(n: int) -> bool:
        return await db["sagas"].count_documents({}) >= n

    async with ResultCollector(stack) as collector:
        await produce(stack, bodies)
        for threshold in (8, 20, 35):
            await wait_until(functools.partial(sagas_at_least, threshold), 120, f"{threshold} sagas started")
            worker.kill()
            kills += 1
            worker.start()
        # Kill whichever relay holds the lease: the standby must take over.
        lease = await db["leases"].find_one({"_id": "outbox-relay"})
        assert lease is not None, "a relay should hold the lease by now"
        active = [r for r in relays if r.alive and r.process and f":{r.process.pid}:" in lease["owner"]]
        assert len(active) == 1
        active[0].kill()
        kills += 1
        results = await collector.wait_for(ids, timeout_s=180)

    worker.terminate()
    for relay in relays:
        relay.terminate()

    assert len(results) == REQUESTS
    assert all(r["event_type"] == "PaymentLinkCreated" for r in results.values()), [
        r for r in results.values() if r["event_type"] != "PaymentLinkCreated"
    ]
    distinct_results = Counter(r["payment_link_id"] for r in results.values())
    assert set(distinct_results.values()) == {1}
    invoices = await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")
    assert len(invoices) == REQUESTS, "exactly one invoice per request"
    assert {i["status"] for i in invoices} == {"open"}, "no draft left behind"
    assert sorted(r["invoice_id"] for r in results.values()) == sorted(i["id"] for i in invoices)
    items = await stripe_objects(stripe_api_base, tenant.stripe_account, "invoiceitem")
    assert len(items) == 2 * REQUESTS, "no line item added twice"
    customers = await stripe_objects(stripe_api_base, tenant.stripe_account, "customer")
    used_contacts = {body["contact_id"] for body in bodies}
    assert len(customers) == len(used_contacts), "one customer per contact"
    output = logs_of(tmp_path)
    assert LOCAL_STRIPE_TEST_KEY not in output and LOCAL_SHORTENER_TOKEN not in output
    print(f"crash test: {REQUESTS} requests, {kills} SIGKILLs, {collector.duplicates} duplicate deliveries")
