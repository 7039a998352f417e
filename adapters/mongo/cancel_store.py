"""Cancels' records in the ``cancels`` collection, one document per ``cancel_request_id`` (its ``_id``).

Optimistic concurrency as in ``adapters.mongo.saga_store``: ``save`` replaces the document only where
``version`` still has the value it was read with. Documents are ``CancelRecord.to_document()`` plus ``_id``.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.cancel_record import CancelRecord
from domain.errors import ConcurrentUpdateError


def _document(record: CancelRecord) -> dict[str, Any]:
    return {**record.to_document(), "_id": record.cancel_request_id}


class MongoCancelStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._cancels = database["cancels"]

    async def create_if_absent(self, record: CancelRecord) -> CancelRecord:
        with store_errors("cancel create"):
            try:
                await self._cancels.insert_one(_document(record))
                return record
            except DuplicateKeyError:
                existing = await self._cancels.find_one({"_id": record.cancel_request_id})
        if existing is None:  # deleted in between (records are never deleted): a retry settles it
            raise ConcurrentUpdateError(record.cancel_request_id, record.version)
        return CancelRecord.from_document(existing)

    async def load(self, cancel_request_id: str) -> CancelRecord | None:
        with store_errors("cancel load"):
            document = await self._cancels.find_one({"_id": cancel_request_id})
        return CancelRecord.from_document(document) if document else None

    async def find_for_link(self, payment_link_id: str, limit: int = 100) -> list[CancelRecord]:
        """The link's cancel requests, oldest first (an operator's query: no index, FerretDB scans)."""
        with store_errors("cancel query"):
            cursor = self._cancels.find({"payment_link_id": payment_link_id}).sort("created_at", 1).limit(limit)
            return [CancelRecord.from_document(document) async for document in cursor]

    async def save(self, record: CancelRecord) -> CancelRecord:
        stored = record.model_copy(update={"version": record.version + 1})
        with store_errors("cancel save"):
            result = await self._cancels.replace_one(
                {"_id": record.cancel_request_id, "version": record.version}, _document(stored)
            )
        if result.matched_count != 1:
            raise ConcurrentUpdateError(record.cancel_request_id, record.version)
        return stored
