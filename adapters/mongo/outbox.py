"""The outbox: result events waiting to be published to Kafka by the relay.

Document: ``{_id: event_id, seq, key, event_type, payload, created_at, published, published_at}``.
``_id`` is the result's ``event_id``, so appending the same event twice stores it once. ``seq`` comes
from an atomic counter and gives the relay its publishing order (insertion order).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.errors import RetryableError

Document = dict[str, Any]


class ResultEvent(Protocol):
    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def contact_id(self) -> str | None: ...
    def model_dump_json(self) -> str: ...


@dataclass(frozen=True)
class OutboxEntry:
    event_id: str
    seq: int
    key: str | None
    event_type: str
    payload: bytes
    created_at: datetime


class MongoOutbox:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._entries = database["outbox"]
        self._counters = database["counters"]

    async def ensure_indexes(self) -> None:
        with store_errors("outbox index creation"):
            await self._entries.create_index([("published", ASCENDING), ("seq", ASCENDING)])
            await self._entries.create_index([("published", ASCENDING), ("published_at", ASCENDING)])

    async def append(self, event: ResultEvent) -> None:
        """Stores ``event`` once: a second append of the same ``event_id`` changes nothing."""
        with store_errors("outbox append"):
            try:
                await self._entries.insert_one(
                    {
                        "_id": event.event_id,
                        "seq": await self._next_seq(),
                        "key": event.contact_id,
                        "event_type": event.event_type,
                        "payload": event.model_dump_json(),
                        "created_at": datetime.now(UTC),
                        "published": False,
                        "published_at": None,
                    }
                )
            except DuplicateKeyError:
                return  # appended before (a redelivery, or a concurrent append of the same event)

    async def _next_seq(self) -> int:
        for _ in range(3):
            try:
                counter = await self._counters.find_one_and_update(
                    {"_id": "outbox"}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
                )
                return int(counter["seq"]) if counter else 0
            except DuplicateKeyError:
                continue  # two first-ever upserts raced; the counter exists now
        raise RetryableError("internal_error", "outbox sequence counter is contended")

    async def unpublished(self, limit: int) -> list[OutboxEntry]:
        """The oldest unpublished entries, in insertion order."""
        with store_errors("outbox read"):
            cursor = self._entries.find({"published": False}).sort("seq", ASCENDING).limit(limit)
            return [
                OutboxEntry(
                    event_id=doc["_id"],
                    seq=doc["seq"],
                    key=doc["key"],
                    event_type=doc["event_type"],
                    payload=doc["payload"].encode(),
                    created_at=_aware(doc["created_at"]),
                )
                async for doc in cursor
            ]

    async def mark_published(self, event_ids: list[str]) -> None:
        with store_errors("outbox mark published"):
            await self._entries.update_many(
                {"_id": {"$in": event_ids}},
                {"$set": {"published": True, "published_at": datetime.now(UTC)}},
            )

    async def purge_published(self, older_than: timedelta) -> int:
        """Deletes entries published more than ``older_than`` ago; returns how many."""
        with store_errors("outbox purge"):
            cutoff = datetime.now(UTC) - older_than
            result = await self._entries.delete_many({"published": True, "published_at": {"$lt": cutoff}})
            return result.deleted_count

    async def backlog(self) -> tuple[int, datetime | None]:
        """How many entries wait, and when the oldest of them was appended."""
        with store_errors("outbox backlog"):
            count = await self._entries.count_documents({"published": False})
            oldest = await self._entries.find_one({"published": False}, sort=[("seq", ASCENDING)])
            return count, _aware(oldest["created_at"]) if oldest else None


def _aware(moment: datetime) -> datetime:
    # BSON dates come back naive (UTC) unless the client is tz_aware.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
