"""Indexes paylink needs, created at start-up (idempotent: an existing index is left as it is)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.dead_letters import MongoDeadLetters
from adapters.mongo.lifecycle_store import MongoLifecycleStore
from adapters.mongo.outbox import MongoOutbox
from adapters.mongo.saga_store import MongoSagaStore


async def ensure_indexes(database: AsyncDatabase[dict[str, Any]]) -> None:
    await MongoSagaStore(database).ensure_indexes()
    await MongoOutbox(database).ensure_indexes()
    await MongoDeadLetters(database).ensure_indexes()
    await MongoLifecycleStore(database).ensure_indexes()
