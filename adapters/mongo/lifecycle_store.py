"""Links' lifecycle records in the ``lifecycles`` collection, one document per ``payment_link_id`` (its ``_id``).

Optimistic concurrency as in ``adapters.mongo.saga_store``: ``save`` replaces the document only where
``version`` still has the value it was read with, so of concurrent observers of one link exactly one
claims a transition. Documents are ``LifecycleRecord.to_document()`` (JSON form: dates and times as
strings, ``updated_at`` fixed-width UTC so it sorts), plus ``_id``.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.errors import ConcurrentUpdateError
from domain.lifecycle import LifecycleRecord


def _document(record: LifecycleRecord) -> dict[str, Any]:
    return {**record.to_document(), "_id": record.payment_link_id}


class MongoLifecycleStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._lifecycles = database["lifecycles"]

    async def ensure_indexes(self) -> None:
        with store_errors("lifecycle index creation"):
            await self._lifecycles.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
            await self._lifecycles.create_index([("account_id", ASCENDING), ("updated_at", ASCENDING)])

    async def create_if_absent(self, record: LifecycleRecord) -> LifecycleRecord:
        with store_errors("lifecycle create"):
            try:
                await self._lifecycles.insert_one(_document(record))
                return record
            except DuplicateKeyError:
                existing = await self._lifecycles.find_one({"_id": record.payment_link_id})
        if existing is None:  # deleted in between (records are never deleted): a retry settles it
            raise ConcurrentUpdateError(record.payment_link_id, record.version)
        return LifecycleRecord.from_document(existing)

    async def load(self, payment_link_id: str) -> LifecycleRecord | None:
        with store_errors("lifecycle load"):
            document = await self._lifecycles.find_one({"_id": payment_link_id})
        return LifecycleRecord.from_document(document) if document else None

    async def count_by_status(self) -> dict[str, int]:
        """Links per lifecycle status (``open``, ``paid``, ...), and ``overdue`` among them, for ``paylink status``."""
        with store_errors("lifecycle counts"):
            cursor = await self._lifecycles.aggregate([{"$group": {"_id": "$status", "count": {"$sum": 1}}}])
            counts = {str(row["_id"]): int(row["count"]) async for row in cursor}
            counts["overdue"] = await self._lifecycles.count_documents({"overdue": True})
        return counts

    async def save(self, record: LifecycleRecord) -> LifecycleRecord:
        stored = record.model_copy(update={"version": record.version + 1})
        with store_errors("lifecycle save"):
            result = await self._lifecycles.replace_one(
                {"_id": record.payment_link_id, "version": record.version}, _document(stored)
            )
        if result.matched_count != 1:
            raise ConcurrentUpdateError(record.payment_link_id, record.version)
        return stored
