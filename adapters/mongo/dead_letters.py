"""Dead letters: messages that could not be processed, kept with their raw bytes for operators.

Document ``_id`` is ``topic:partition:offset``, so recording the same message twice (a redelivery after
a crash) keeps one record and counts the attempt.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson.binary import Binary
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.stored import DeadLetter


class MongoDeadLetters:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._letters = database["dead_letters"]

    async def ensure_indexes(self) -> None:
        with store_errors("dead letter index creation"):
            await self._letters.create_index([("failed_at", DESCENDING)])
            await self._letters.create_index("reason")

    async def record(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes,
        reason: str,
        message: str,
        event_id: str | None = None,
        account_id: str | None = None,
    ) -> str:
        letter_id = f"{topic}:{partition}:{offset}"
        now = datetime.now(UTC)
        update = {
            "$setOnInsert": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "raw": Binary(raw),
                "first_failed_at": now,
            },
            "$set": {
                "reason": reason,
                "message": message,
                "event_id": event_id,
                "account_id": account_id,
                "failed_at": now,
            },
            "$inc": {"attempts": 1},
        }
        with store_errors("dead letter record"):
            try:
                await self._letters.update_one({"_id": letter_id}, update, upsert=True)
            except DuplicateKeyError:  # two first-ever upserts of one id raced: the record exists now
                await self._letters.update_one({"_id": letter_id}, update)
        return letter_id

    async def get(self, letter_id: str) -> DeadLetter | None:
        with store_errors("dead letter read"):
            doc = await self._letters.find_one({"_id": letter_id})
        return _letter(doc) if doc else None

    async def find(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[DeadLetter]:
        query = _filter(reason, account_id, since, until)
        with store_errors("dead letter list"):
            cursor = self._letters.find(query).sort("failed_at", DESCENDING).limit(limit)
            return [_letter(doc) async for doc in cursor]

    async def purge(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        with store_errors("dead letter purge"):
            result = await self._letters.delete_many(_filter(reason, account_id, since, until))
        return result.deleted_count


def _filter(
    reason: str | None, account_id: str | None, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if reason:
        query["reason"] = reason
    if account_id:
        query["account_id"] = account_id
    window = {op: moment for op, moment in (("$gte", since), ("$lt", until)) if moment}
    if window:
        query["failed_at"] = window
    return query


def _letter(doc: dict[str, Any]) -> DeadLetter:
    first = doc["first_failed_at"]
    return DeadLetter(
        id=doc["_id"],
        topic=doc["topic"],
        partition=doc["partition"],
        offset=doc["offset"],
        raw=bytes(doc["raw"]),
        reason=doc["reason"],
        message=doc["message"],
        event_id=doc.get("event_id"),
        account_id=doc.get("account_id"),
        first_failed_at=first if first.tzinfo else first.replace(tzinfo=UTC),
        attempts=doc.get("attempts", 1),
    )
