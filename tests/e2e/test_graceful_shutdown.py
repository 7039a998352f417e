"""SIGTERM drains: in-flight sagas finish, their offsets are committed, the process exits 0 in time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, wait_until
from tests.integration.harness import (
    ResultCollector,
    produce,
    request,
    seed_tenant,
    stripe_latency,
)

REQUESTS = 24
IN_FLIGHT = ["running", "compensating"]  # the statuses of a saga not ended yet


@pytest.fixture
async def stack(pipeline_stack: StackFactory, stripe_api_base: str) -> AsyncIterator[Settings]:
    settings = await pipeline_stack(max_in_flight=8, drain_timeout_s=20.0)
    async with stripe_latency(stripe_api_base, 150):
        yield settings


async def committed_total(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.consumer_group)
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def test_sigterm_finishes_in_flight_sagas_and_commits_them(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, {f"c{i}": {"email": f"c{i}@example.com"} for i in range(REQUESTS)})
    bodies = [request(tenant, f"c{i}") for i in range(REQUESTS)]
    worker = PaylinkProcess("worker", stack, tmp_path).start()
    relay = PaylinkProcess("relay", stack, tmp_path).start()
    try:
        async with ResultCollector(stack) as collector:
            await produce(stack, bodies)

            async def some_in_flight() -> bool:
                return (
                    await db["sagas"].count_documents({"status": {"$in": IN_FLIGHT}, "customer_id": {"$ne": None}}) >= 4
                )

            await wait_until(some_in_flight, 60, "sagas in flight")
            stopping = time.monotonic()
            exit_code = worker.terminate(timeout_s=stack.drain_timeout_s + 10)
            drained_in = time.monotonic() - stopping

            assert exit_code == 0
            assert drained_in < stack.drain_timeout_s + 10
            assert await db["sagas"].count_documents({"status": {"$in": IN_FLIGHT}}) == 0, (
                "in-flight sagas were abandoned"
            )
            finished = await db["sagas"].count_documents({"status": {"$nin": IN_FLIGHT}})
            assert await committed_total(stack) == finished, "every finished saga's offset is committed, no more"

            worker.start()
            results = await collector.wait_for({b["event_id"] for b in bodies}, timeout_s=120)
        assert {r["event_type"] for r in results.values()} == {"PaymentLinkCreated"}
    finally:
        worker.terminate()
        relay.terminate()
