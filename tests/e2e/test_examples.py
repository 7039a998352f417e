"""The integrators' examples end to end on the real stack, with a worker and a relay running: requests
sent by ``examples/producer.py`` (one with a ``traceparent``), results read by ``examples/consumer.py`` in
its own consumer group. A created, a failed, and a failed-retryable-then-replayed-then-created request;
a duplicate request (its stored result re-published: the consumer ignores it by ``event_id``); a cancel
(a lifecycle event) and a rejected cancel."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import ROOT, environment
from tests.integration.cli_helpers import paylink, stripe_fault
from tests.integration.harness import running_pipeline, seed_tenant
from tests.integration.streams import Streaming, streaming

CONTACTS = {"ada": {"name": "Ada Lovelace", "email": "ada@example.com"}, "bob": {"name": "Bob", "email": "b@x.io"}}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(retry_attempts=2)


def example_env(settings: Settings) -> dict[str, str]:
    return {**environment(settings), "PYTHONPATH": str(ROOT)}


async def producer(settings: Settings, *args: str) -> str:
    """Runs examples/producer.py; its ``event_id``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "producer.py"),
        *args,
        env=example_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


def has(crm: Streaming, text: str) -> bool:
    return any(text in line for line in crm.lines)


async def request_headers(settings: Settings, event_id: str) -> dict[str, bytes]:
    """The Kafka headers of the request ``event_id`` on the requests topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.requests_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(30):
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        if json.loads(record.value)["event_id"] == event_id:
                            return {name: bytes(value) for name, value in record.headers}
    finally:
        await consumer.stop()


async def test_examples_send_and_read_created_failed_replayed_duplicate_and_cancelled_links(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, unique_name: str
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS)
    account = ["--account", tenant.account_id]
    crm_argv = [sys.executable, str(ROOT / "examples" / "consumer.py"), "--group", f"{unique_name}-crm"]
    async with running_pipeline(stack), streaming([*crm_argv, "--from-beginning"], example_env(stack)) as crm:
        created = await producer(
            stack, *account, "--contact", tenant.contacts["ada"]["_id"], "--traceparent", TRACEPARENT
        )
        failed = await producer(stack, *account, "--contact", "con-missing")
        fault = stripe_fault(stripe_api_base, tenant.stripe_account, method="POST", path="/v1/invoices", status=500)
        async with fault:
            flaky = await producer(stack, *account, "--contact", tenant.contacts["bob"]["_id"])
            await crm.wait_until(
                lambda: has(crm, f"{flaky} failed attempt=1 reason=stripe_unavailable not final"), "the outage"
            )
        await crm.wait_until(lambda: has(crm, f"{created} created attempt=1 url="), "the created link")
        await crm.wait_until(
            lambda: has(crm, f"{failed} failed attempt=1 reason=contact_not_found final"), "the failure"
        )

        replayed = await paylink(stack, "replay", "--event-id", flaky)
        assert replayed.code == 0, replayed.out + replayed.err
        await crm.wait_until(lambda: has(crm, f"{flaky} created attempt=2 url="), "the replay's result")

        again = await producer(stack, *account, "--contact", tenant.contacts["ada"]["_id"], "--event-id", created)
        assert again == created
        await crm.wait_until(lambda: has(crm, f"{created} duplicate "), "the re-published result")

        cancelled = await paylink(stack, "cancel", "--payment-link-id", created, *account)
        refused = await paylink(stack, "cancel", "--payment-link-id", failed, *account)
        assert (cancelled.code, refused.code) == (0, 0), cancelled.err + refused.err
        await crm.wait_until(lambda: has(crm, f"{created} voided source=cancel"), "the cancel's void")
        await crm.wait_until(lambda: has(crm, "rejected reason=not_created final"), "the rejected cancel")
        assert await crm.stop() == 0

    lines = [line for line in crm.lines if line.split(" ", 1)[0] in {created, failed, flaky}]
    assert sum(f"{created} created" in line for line in lines) == 1, "one created per link, duplicates ignored"
    assert [line.split(" ", 2)[1] for line in lines if line.startswith(flaky)] == ["failed", "created"]
    assert (await request_headers(stack, created))["traceparent"] == TRACEPARENT.encode()
