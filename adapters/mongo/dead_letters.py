"""Dead letters: messages that could not be processed, kept with their raw bytes for operators.

Document ``_id`` is ``topic:partition:offset``, so recording the same message twice (a redelivery after
a crash) keeps one record and counts the attempt. The Kafka key, headers (as ``[{name, value}]``: FerretDB
refuses nested arrays) and timestamp are kept so ``paylink dead-letters retry`` can re-publish it as it came;
``retried_as``/``retried_at`` say it was (letters stored before these fields load without them).
"""

from __future__ import annotations

from collections.abc import Sequence
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
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int | None = None,
    ) -> str:
        letter_id = f"{topic}:{partition}:{offset}"
        now = datetime.now(UTC)
        update = {
            "$setOnInsert": {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "raw": Binary(raw),
                "key": Binary(key) if key is not None else None,
                "headers": [{"name": name, "value": Binary(value)} for name, value in headers],
                "timestamp_ms": timestamp_ms,
                "retried_as": None,
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
        event_id: str | None = None,
    ) -> list[DeadLetter]:
        query = _filter(reason, account_id, since, until)
        if event_id:
            query["event_id"] = event_id
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

    async def count(self, since: datetime | None = None) -> int:
        with store_errors("dead letter count"):
            return await self._letters.count_documents(_filter(None, None, since, None))

    async def delete(self, letter_id: str) -> bool:
        with store_errors("dead letter purge"):
            result = await self._letters.delete_one({"_id": letter_id})
        return result.deleted_count == 1

    async def mark_retried(self, letter_id: str, event_id: str, at: datetime) -> bool:
        with store_errors("dead letter mark retried"):
            result = await self._letters.update_one(
                {"_id": letter_id, "retried_as": None}, {"$set": {"retried_as": event_id, "retried_at": at}}
            )
        return result.modified_count == 1


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
        key=bytes(doc["key"]) if doc.get("key") is not None else None,
        headers=tuple((str(h["name"]), bytes(h["value"])) for h in doc.get("headers") or ()),
        timestamp_ms=doc.get("timestamp_ms"),
        retried_as=doc.get("retried_as"),
        retried_at=_aware(doc["retried_at"]) if doc.get("retried_at") else None,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
