"""`paylink results` on the real stack: --follow sees what the relay publishes after it started, and each
filter keeps exactly the events it names; it commits no consumer-group offsets."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import environment
from tests.integration.cli_helpers import paylink
from tests.integration.harness import ResultCollector, produce, request, running_pipeline, seed_tenant
from tests.integration.streams import streaming

CONTACTS = {"ada": {"name": "Ada Lovelace", "email": "ada@example.com"}}


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack()


def events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def test_follow_then_every_filter(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    first = await seed_tenant(db, stripe_api_base, CONTACTS)
    second = await seed_tenant(db, stripe_api_base, CONTACTS)
    created, failed, other = request(first, "ada"), request(first, "con-missing"), request(second, "ada")
    ids = {body["event_id"] for body in (created, failed, other)}

    groups_before = await consumer_groups(stack)
    argv = [sys.executable, "-m", "consumer.cli", "results", "--follow", "--json", "--headers"]
    async with streaming(argv, environment(stack)) as follow:
        await follow.wait_until(lambda: any(line.startswith("reading ") for line in follow.errors), "the reader")
        async with running_pipeline(stack), ResultCollector(stack) as collector:
            await produce(stack, [created, failed, other])
            await collector.wait_for(ids)
        await follow.wait_until(
            lambda: {json.loads(line)["event"]["payment_link_id"] for line in follow.lines} >= ids, "all three"
        )
        assert await follow.stop(signal.SIGTERM) == 0, "SIGTERM ends --follow as Ctrl-C does"
    followed = [json.loads(line) for line in follow.lines]
    by_link = {entry["event"]["payment_link_id"]: entry for entry in followed}
    assert by_link[created["event_id"]]["key"] == created["contact_id"]
    assert by_link[created["event_id"]]["headers"]["ce_type"] == "PaymentLinkCreated"
    assert by_link[created["event_id"]]["headers"]["ce_id"] == by_link[created["event_id"]]["event"]["event_id"]
    assert by_link[created["event_id"]]["event"]["attempt"] == 1

    everything = await paylink(stack, "results", "--json")
    assert everything.code == 0, everything.err
    assert {e["payment_link_id"] for e in events(everything.out)} == ids

    async def only(*flags: str) -> set[str]:
        ran = await paylink(stack, "results", "--json", *flags)
        assert ran.code == 0, ran.err
        return {e["payment_link_id"] for e in events(ran.out)}

    assert await only("--payment-link-id", created["event_id"]) == {created["event_id"]}
    assert await only("--correlation-id", failed["correlation_id"]) == {failed["event_id"]}
    assert await only("--account", second.account_id) == {other["event_id"]}
    assert await only("--type", "PaymentLinkFailed") == {failed["event_id"]}
    assert await only("--type", "PaymentLinkFailed", "--type", "PaymentLinkCreated") == ids
    assert await only("--account", first.account_id, "--type", "PaymentLinkCreated") == {created["event_id"]}

    readable = await paylink(stack, "results", "--payment-link-id", failed["event_id"])
    assert "PaymentLinkFailed" in readable.out and "reason=contact_not_found" in readable.out, readable.out
    wrong = await paylink(stack, "results", "--type", "PaymentLinkCreatd")
    assert wrong.code == 2 and "PaymentLinkCreated" in wrong.err

    assert await consumer_groups(stack) - groups_before == {stack.consumer_group}, "the readers joined no group"


async def consumer_groups(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        return {str(group[0]) for group in await admin.list_consumer_groups()}
    finally:
        await admin.close()
