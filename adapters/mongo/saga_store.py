"""Saga records in the ``sagas`` collection, one document per ``payment_link_id`` (its ``_id``).

Optimistic concurrency without transactions: ``save`` replaces the document only where ``version``
still has the value it was read with. The request travels as a JSON string, not a sub-document: its
``metadata`` keys are the producer's, and may hold ``.`` or ``$`` that FerretDB refuses in field names.

Statuses: documents are read through ``SagaRecord.from_document``, so one stored before the
``compensating`` status (``running`` with a ``failure``) loads as ``compensating``; no stored document
is rewritten until its saga is saved again. ``find_replayable`` selects ``failed`` and
``compensation_failed`` only (never in-flight sagas, old form or new); ``count_by_status`` counts old-form
compensating documents as ``compensating``. ``find_created`` selects ``created`` sagas for the
lifecycle's reconcile and overdue scan.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.errors import ConcurrentUpdateError
from domain.saga_record import TIMESTAMP_FORMAT, SagaRecord, SagaStatus

REPLAYABLE = [SagaStatus.FAILED.value, SagaStatus.COMPENSATION_FAILED.value]
OLD_FORM_COMPENSATING = {"status": SagaStatus.RUNNING.value, "failure": {"$ne": None}}


def _document(record: SagaRecord) -> dict[str, Any]:
    document = record.to_document()
    document["_id"] = record.payment_link_id
    document["request"] = json.dumps(document["request"], separators=(",", ":"))
    return document


def _record(document: dict[str, Any]) -> SagaRecord:
    fields = dict(document)
    fields["request"] = json.loads(fields["request"])
    return SagaRecord.from_document(fields)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


class MongoSagaStore:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._sagas = database["sagas"]

    async def ensure_indexes(self) -> None:
        with store_errors("saga index creation"):
            await self._sagas.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
            await self._sagas.create_index([("account_id", ASCENDING), ("updated_at", ASCENDING)])

    async def create_if_absent(self, record: SagaRecord) -> SagaRecord:
        with store_errors("saga create"):
            try:
                await self._sagas.insert_one(_document(record))
                return record
            except DuplicateKeyError:
                existing = await self._sagas.find_one({"_id": record.payment_link_id})
        if existing is None:  # deleted in between: extremely unlikely, and a retry settles it
            raise ConcurrentUpdateError(record.payment_link_id, record.version)
        return _record(existing)

    async def load(self, payment_link_id: str) -> SagaRecord | None:
        with store_errors("saga load"):
            document = await self._sagas.find_one({"_id": payment_link_id})
        return _record(document) if document else None

    async def save(self, record: SagaRecord) -> SagaRecord:
        stored = record.model_copy(update={"version": record.version + 1})
        with store_errors("saga save"):
            result = await self._sagas.replace_one(
                {"_id": record.payment_link_id, "version": record.version}, _document(stored)
            )
        if result.matched_count != 1:
            raise ConcurrentUpdateError(record.payment_link_id, record.version)
        return stored

    async def find_replayable(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[SagaRecord]:
        query: dict[str, Any] = {"status": {"$in": REPLAYABLE}}
        if reason:
            query["failure.reason"] = reason
        if account_id:
            query["account_id"] = account_id
        window = {op: _timestamp(m) for op, m in (("$gte", since), ("$lt", until)) if m is not None}
        if window:
            query["updated_at"] = window
        with store_errors("saga query"):
            cursor = self._sagas.find(query).sort("updated_at", ASCENDING).limit(limit)
            return [_record(document) async for document in cursor]

    async def find_created(
        self,
        *,
        account_id: str | None = None,
        since: datetime | None = None,
        due_before: date | None = None,
        limit: int = 1000,
    ) -> list[SagaRecord]:
        query: dict[str, Any] = {"status": SagaStatus.CREATED.value}
        if account_id:
            query["account_id"] = account_id
        if since is not None:
            query["updated_at"] = {"$gte": _timestamp(since)}
        if due_before is not None:
            query["due_date"] = {"$lt": due_before.isoformat()}  # ISO dates sort as they compare
        with store_errors("saga query"):
            cursor = self._sagas.find(query).sort([("updated_at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
            return [_record(document) async for document in cursor]

    async def failures_by_reason(self, since: datetime) -> list[tuple[str, bool, int]]:
        """(reason, retryable, count) of the sagas that ended failed or compensation_failed since ``since``."""
        return await _failures(self._sagas, since)

    async def count_by_status(self, since: datetime | None = None) -> dict[str, int]:
        """Sagas per status (updated since ``since``), for ``paylink status``; an old-form compensating
        document (``running`` with a ``failure``) counts as ``compensating``."""
        match: dict[str, Any] = {"updated_at": {"$gte": _timestamp(since)}} if since else {}
        with store_errors("saga counts"):
            cursor = await self._sagas.aggregate(
                [{"$match": match}, {"$group": {"_id": "$status", "count": {"$sum": 1}}}]
            )
            counts = {str(row["_id"]): int(row["count"]) async for row in cursor}
            if counts.get(SagaStatus.RUNNING.value):
                old_form = await self._sagas.count_documents({**match, **OLD_FORM_COMPENSATING})
                _move(counts, old_form, SagaStatus.RUNNING.value, SagaStatus.COMPENSATING.value)
        return counts


async def _failures(sagas: Any, since: datetime) -> list[tuple[str, bool, int]]:
    match = {"status": {"$in": REPLAYABLE}, "updated_at": {"$gte": _timestamp(since)}}
    group = {"_id": {"reason": "$failure.reason", "retryable": "$failure.retryable"}, "count": {"$sum": 1}}
    with store_errors("saga failure counts"):
        cursor = await sagas.aggregate([{"$match": match}, {"$group": group}])
        rows = [(str(row["_id"]["reason"]), bool(row["_id"]["retryable"]), int(row["count"])) async for row in cursor]
    return sorted(rows)


def _move(counts: dict[str, int], number: int, source: str, target: str) -> None:
    if number:
        counts[source] -= number
        counts[target] = counts.get(target, 0) + number
        if not counts[source]:
            del counts[source]
