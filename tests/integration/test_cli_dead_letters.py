"""`paylink dead-letters list|show|purge` end to end: poisoned messages go through a real worker, and
`show` gives back each one's raw bytes exactly (stdout), with its record on stderr."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import wait_until
from tests.integration.cli_helpers import paylink
from tests.integration.harness import produce, running_pipeline


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
    assert (dry.code, dry.out.strip()) == (0, "would purge 1 dead letter(s)")
    purged = await paylink(stack, "dead-letters", "purge", "--account", "acc-dl")
    assert (purged.code, purged.out.strip()) == (0, "purged 1 dead letter(s)")
    rest = await paylink(stack, "dead-letters", "purge", "--all", "--since", "1h")
    assert rest.code == 2, "--all and filters exclude each other"
    rest = await paylink(stack, "dead-letters", "purge", "--since", "1h")
    assert (rest.code, rest.out.strip()) == (0, "purged 2 dead letter(s)")
    assert await db["dead_letters"].count_documents({}) == 0
