"""SIGTERM drains: in-flight sagas finish, their offsets are committed, the process exits 0 in time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from consumer.settings import Settings
from tests.e2e.processes import PaylinkProcess, wait_until
from tests.integration.harness import ResultCollector, create_topics, produce, request, seed_tenant, settings_for

REQUESTS = 24


@pytest.fixture
async def stack(
    kafka_bootstrap: str,
    mongodb_uri: str,
    stripe_api_base: str,
    shortener_base: str,
    unique_name: str,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[Settings]:
    settings = settings_for(
        unique_name,
        kafka=kafka_bootstrap,
        mongodb_uri=mongodb_uri,
        stripe_base=stripe_api_base,
        shortener_base=shortener_base,
        max_in_flight=8,
        drain_timeout_s=20.0,
    )
    await create_topics(settings)
    async with httpx.AsyncClient(base_url=stripe_api_base) as control:
        (await control.post("/_emulator/config", json={"latency_ms": 150})).raise_for_status()
        try:
            yield settings
        finally:
            await control.post("/_emulator/config", json={"latency_ms": 0})
    await mongo_client.drop_database(settings.mongodb_uri.rsplit("/", 1)[1])


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
                return await db["sagas"].count_documents({"status": "running", "customer_id": {"$ne": None}}) >= 4

            await wait_until(some_in_flight, 60, "sagas in flight")
            stopping = time.monotonic()
            exit_code = worker.terminate(timeout_s=stack.drain_timeout_s + 10)
            drained_in = time.monotonic() - stopping

            assert exit_code == 0
            assert drained_in < stack.drain_timeout_s + 10
            assert await db["sagas"].count_documents({"status": "running"}) == 0, "in-flight sagas were abandoned"
            finished = await db["sagas"].count_documents({"status": {"$ne": "running"}})
            assert await committed_total(stack) == finished, "every finished saga's offset is committed, no more"

            worker.start()
            results = await collector.wait_for({b["event_id"] for b in bodies}, timeout_s=120)
        assert {r["event_type"] for r in results.values()} == {"PaymentLinkCreated"}
    finally:
        worker.terminate()
        relay.terminate()
