"""`paylink dead-letters list|show|purge` end to end: poisoned messages go through a real worker, and
`show` gives back each one's raw bytes exactly (stdout), with its record on stderr."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import wait_until
from tests.integration.cli_helpers import paylink
from tests.integration.harness import ResultCollector, produce, request, running_pipeline, seed_tenant


async def produce_with_headers(
    stack: Settings, messages: list[dict[str, Any]], key: bytes, headers: list[tuple[str, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers)
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(stack.requests_topic, json.dumps(message).encode(), key=key, headers=headers)
    finally:
        await producer.stop()


async def consumed_requests(stack: Settings) -> list[Any]:
    """Every record of the requests topic, read from the beginning (partition 0 .. topic_partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(stack.requests_topic, p) for p in range(stack.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += batch
        return records
    finally:
        await consumer.stop()


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack()


async def test_dead_letters_list_show_byte_for_byte_and_purge(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    event_id = str(uuid.uuid4())
    poisoned = {
        "garbage": b"\xff\xfe\x00 not json at all \r\n\x1b[31m\x00\xc3",
        "invalid": json.dumps(
            {"event_id": event_id, "event_type": "PaymentLinkRequested", "account_id": "acc-dl", "contact_id": "c-1"}
        ).encode(),
        "empty": b"",
    }
    async with running_pipeline(stack, relays=0):
        await produce(stack, list(poisoned.values()), key=b"poison")

        async def all_dead_lettered() -> bool:
            return await db["dead_letters"].count_documents({}) == len(poisoned)

        await wait_until(all_dead_lettered, 60, "three dead letters")

    listed = await paylink(stack, "dead-letters", "list", "--json")
    assert listed.code == 0, listed.err
    letters = [json.loads(line) for line in listed.out.splitlines()]
    assert {letter["bytes"] for letter in letters} == {len(raw) for raw in poisoned.values()}
    assert all(letter["reason"] == "invalid_event" for letter in letters)
    for letter in letters:
        shown = await paylink(stack, "dead-letters", "show", letter["id"])
        assert shown.code == 0, shown.err
        assert shown.stdout in poisoned.values() and len(shown.stdout) == letter["bytes"]
        assert "reason: invalid_event" in shown.err and f"id: {letter['id']}" in shown.err

    by_account = await paylink(stack, "dead-letters", "list", "--account", "acc-dl")
    assert by_account.code == 0 and event_id in by_account.out and by_account.out.count("\n") == 2  # header + 1
    assert (await paylink(stack, "dead-letters", "show", f"{stack.requests_topic}:0:999999")).code == 1
    assert (await paylink(stack, "dead-letters", "purge")).code == 2, "purge needs a filter or --all"

    dry = await paylink(stack, "dead-letters", "purge", "--account", "acc-dl", "--dry-run")
    assert dry.code == 0 and dry.out.strip().endswith("would purge 1 dead letter(s)")
    assert event_id in dry.out, "a dry run lists what would go"
    purged = await paylink(stack, "dead-letters", "purge", "--account", "acc-dl")
    assert (purged.code, purged.out.strip()) == (0, "purged 1 dead letter(s)")
    rest = await paylink(stack, "dead-letters", "purge", "--all", "--since", "1h")
    assert rest.code == 2, "--all and filters exclude each other"
    rest = await paylink(stack, "dead-letters", "purge", "--since", "1h")
    assert (rest.code, rest.out.strip()) == (0, "purged 2 dead letter(s)")
    assert await db["dead_letters"].count_documents({}) == 0


async def test_retry_republishes_with_the_original_key_and_headers_once_and_purge_takes_an_id(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, {"ada": {"name": "Ada", "email": "ada@example.com"}})
    broken = request(tenant, "ada", currency="not-a-currency")
    fixable = request(tenant, "ada", line_items="nope")
    headers = [("x-origin", b"crm"), ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    async with running_pipeline(stack, relays=0):
        await produce_with_headers(stack, [broken, fixable], key=b"contact-key", headers=headers)

        async def dead_lettered() -> bool:
            return await db["dead_letters"].count_documents({}) == 2

        await wait_until(dead_lettered, 60, "two dead letters")
    letters = {doc["event_id"]: doc["_id"] for doc in await db["dead_letters"].find({}).to_list()}
    shown = await paylink(stack, "dead-letters", "show", letters[fixable["event_id"]])
    assert "key: contact-key" in shown.err and "x-origin" in shown.err, shown.err

    refused = await paylink(stack, "dead-letters", "retry", letters[broken["event_id"]])
    assert refused.code == 2 and "does not validate" in refused.err, refused.err
    edited = tmp_path / "edited.json"
    edited_file = str(edited)
    edited.write_text(json.dumps({**fixable, "line_items": "still wrong"}))
    invalid_edit = await paylink(stack, "dead-letters", "retry", letters[fixable["event_id"]], "--file", edited_file)
    assert invalid_edit.code == 2, "an edit that does not validate is refused"

    edited.write_text(json.dumps({**fixable, "line_items": [{"description": "Fixed", "amount": 700}]}))
    letter_id = letters[fixable["event_id"]]
    dry = await paylink(stack, "dead-letters", "retry", letter_id, "--file", edited_file, "--dry-run")
    assert dry.code == 0 and "would re-publish" in dry.err, dry.err
    assert await db["dead_letters"].count_documents({"_id": letter_id, "retried_as": None}) == 1, (
        "a dry run marks nothing"
    )
    async with running_pipeline(stack), ResultCollector(stack) as collector:
        sent = await paylink(stack, "dead-letters", "retry", letter_id, "--file", edited_file)
        assert (sent.code, sent.out.strip()) == (0, fixable["event_id"]), sent.err
        # The rejection of the invalid original comes first (the relay publishes it now), then the link.
        await collector.wait_until(
            lambda events: any(
                e["payment_link_id"] == fixable["event_id"] and e["event_type"] == "PaymentLinkCreated" for e in events
            ),
            "the retried request's link",
        )
    again = await paylink(stack, "dead-letters", "retry", letter_id, "--file", edited_file)
    assert again.code == 0 and "already retried" in again.err
    resent = await consumed_requests(stack)
    [retried] = [r for r in resent if dict(r.headers).get("paylink-retried-from") == letter_id.encode()]
    assert retried.key == b"contact-key" and ("x-origin", b"crm") in retried.headers
    assert "traceparent" not in dict(retried.headers), "stale trace context dropped"

    listed = await paylink(stack, "dead-letters", "purge", "--id", letter_id, "--dry-run")
    assert listed.code == 0 and letter_id in listed.out and "would purge 1" in listed.out
    purged = await paylink(stack, "dead-letters", "purge", "--id", letter_id)
    assert (purged.code, purged.out.strip()) == (0, "purged 1 dead letter(s)")
    assert await db["dead_letters"].count_documents({}) == 1
    gone = await paylink(stack, "dead-letters", "purge", "--id", letter_id)
    assert gone.code == 1 and "no dead letter" in gone.err
