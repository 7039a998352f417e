"""The relay's side of ``MongoOutbox`` on the real store: what stays pending, what moves, what is purged.

The outbox port (append) has its contract suite; these are the operations only the relay and
``paylink status`` use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.outbox import MongoOutbox
from tests.contract.test_outbox_contract import created

Database = AsyncDatabase[dict[str, Any]]


async def _outbox_with(database: Database, count: int) -> tuple[MongoOutbox, list[str]]:
    outbox = MongoOutbox(database)
    await outbox.ensure_indexes()
    events = [created(contact_id=f"con-{n}") for n in range(count)]
    for event in events:
        await outbox.append(event)
    return outbox, [event.event_id for event in events]


async def test_published_entries_leave_the_pending_collection_and_stay_for_retention(mongo_db: Database) -> None:
    outbox, event_ids = await _outbox_with(mongo_db, 5)

    first = await outbox.unpublished(limit=3)
    assert [entry.event_id for entry in first] == event_ids[:3]
    await outbox.mark_published(first)

    rest = await outbox.unpublished(limit=10)
    assert [entry.event_id for entry in rest] == event_ids[3:]
    assert await outbox.backlog() == (2, rest[0].created_at)
    # Polls read only what is pending: published entries sit in their own collection.
    assert await mongo_db["outbox"].count_documents({}) == 2
    kept = await mongo_db["outbox_published"].find({}).sort("seq", 1).to_list()
    assert [doc["_id"] for doc in kept] == event_ids[:3]
    assert all(doc["published"] and doc["published_at"] is not None for doc in kept)
    assert [doc["payload"] for doc in kept] == [entry.payload.decode() for entry in first]


async def test_marking_a_batch_again_after_a_crash_is_harmless(mongo_db: Database) -> None:
    outbox, event_ids = await _outbox_with(mongo_db, 3)
    batch = await outbox.unpublished(limit=10)
    await outbox.mark_published(batch[:2])

    # A relay that died after copying but before deleting republishes the batch and marks it again.
    await mongo_db["outbox"].insert_one({**(await mongo_db["outbox_published"].find_one({"_id": event_ids[0]}) or {}),
                                         "published": False, "published_at": None})  # fmt: skip
    again = await outbox.unpublished(limit=10)
    assert [entry.event_id for entry in again] == [event_ids[0], event_ids[2]]
    await outbox.mark_published(again)

    assert await outbox.unpublished(limit=10) == []
    assert await mongo_db["outbox_published"].count_documents({}) == 3


async def test_purge_deletes_only_entries_published_before_the_retention(mongo_db: Database) -> None:
    outbox, event_ids = await _outbox_with(mongo_db, 4)
    await outbox.mark_published(await outbox.unpublished(limit=2))
    long_ago = datetime.now(UTC) - timedelta(days=8)
    await mongo_db["outbox_published"].update_one({"_id": event_ids[0]}, {"$set": {"published_at": long_ago}})
    # An entry flagged in place by a relay of the previous version (before published entries moved).
    legacy = await outbox.unpublished(limit=1)
    await mongo_db["outbox"].update_one(
        {"_id": legacy[0].event_id}, {"$set": {"published": True, "published_at": long_ago}}
    )

    assert await outbox.purge_published(timedelta(days=7)) == 2

    assert [doc["_id"] async for doc in mongo_db["outbox_published"].find({})] == [event_ids[1]]
    assert [entry.event_id for entry in await outbox.unpublished(limit=10)] == [event_ids[3]]
    assert await outbox.purge_published(timedelta(days=7)) == 0


async def test_published_events_keep_their_kafka_position_for_show(mongo_db: Database) -> None:
    outbox, event_ids = await _outbox_with(mongo_db, 3)
    batch = await outbox.unpublished(limit=2)
    await outbox.mark_published(batch, {event_ids[0]: (2, 41)})  # the second one's position is unknown

    found = await outbox.find_events(event_ids)

    assert [(e.event_id, e.published, e.partition, e.offset) for e in found] == [
        (event_ids[0], True, 2, 41),
        (event_ids[1], True, None, None),
        (event_ids[2], False, None, None),
    ]
    assert all(e.published_at is not None for e in found[:2]) and found[2].published_at is None


async def test_the_seq_counter_starts_above_the_claims_and_entries_of_earlier_versions(mongo_db: Database) -> None:
    # An outbox written by a version that claimed each seq in ``outbox_seq``: a pending entry at 700, the
    # newest claim at 900 (its entry still being inserted). New appends must follow both.
    await mongo_db["outbox_seq"].insert_many([{"_id": 650}, {"_id": 900}])
    old = created(contact_id="con-old")
    await mongo_db["outbox"].insert_one(
        {"_id": old.event_id, "seq": 700, "key": "con-old", "event_type": old.event_type,
         "payload": old.model_dump_json(), "published": False, "published_at": None,
         "created_at": datetime.now(UTC)}
    )  # fmt: skip
    outbox = MongoOutbox(mongo_db)
    first, second = created(contact_id="con-new"), created(contact_id="con-new")

    await outbox.append(first)
    await outbox.append(second)

    pending = await outbox.unpublished(limit=10)
    assert [entry.event_id for entry in pending] == [old.event_id, first.event_id, second.event_id]
    assert [entry.seq for entry in pending] == [700, 901, 902]


async def test_an_append_after_another_process_appended_is_published_after_it(mongo_db: Database) -> None:
    # Two processes (two adapters, nothing shared in memory): the webhook process appends a link's lifecycle
    # event after a worker appended its result; the worker appends many results meanwhile.
    worker, webhooks = MongoOutbox(mongo_db), MongoOutbox(mongo_db)
    for n in range(20):
        await worker.append(created(contact_id=f"con-{n}"))
    result = created(contact_id="con-link")
    await worker.append(result)
    later = created(contact_id="con-link")

    await webhooks.append(later)

    pending = [entry.event_id for entry in await worker.unpublished(limit=100)]
    assert pending.index(result.event_id) < pending.index(later.event_id) == len(pending) - 1
