"""The store is real: AsyncMongoClient round trips through the MongoDB wire protocol (FerretDB locally)."""

from __future__ import annotations

import pytest
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


async def test_insert_find_and_atomic_update(mongo_db: AsyncDatabase[dict[str, object]]) -> None:
    contacts = mongo_db["contacts"]
    await contacts.insert_one({"_id": "c1", "account_id": "a1", "email": "ada@example.com"})
    found = await contacts.find_one({"_id": "c1", "account_id": "a1"})
    assert found is not None and found["email"] == "ada@example.com"
    assert await contacts.find_one({"_id": "c1", "account_id": "someone-else"}) is None

    # Link only when no customer is linked yet: the first writer wins, the second sees it.
    first = await contacts.find_one_and_update(
        {"_id": "c1", "stripe_customers.acct_1": {"$exists": False}},
        {"$set": {"stripe_customers.acct_1": "cus_A"}},
        return_document=ReturnDocument.AFTER,
    )
    second = await contacts.find_one_and_update(
        {"_id": "c1", "stripe_customers.acct_1": {"$exists": False}},
        {"$set": {"stripe_customers.acct_1": "cus_B"}},
        return_document=ReturnDocument.AFTER,
    )
    assert first is not None and first["stripe_customers"] == {"acct_1": "cus_A"}
    assert second is None
    stored = await contacts.find_one({"_id": "c1"})
    assert stored is not None and stored["stripe_customers"] == {"acct_1": "cus_A"}


async def test_upsert_and_unique_index(mongo_db: AsyncDatabase[dict[str, object]]) -> None:
    outbox = mongo_db["outbox"]
    await outbox.create_index("event_id", unique=True)
    await outbox.insert_one({"event_id": "e1", "seq": 1})
    with pytest.raises(DuplicateKeyError):
        await outbox.insert_one({"event_id": "e1", "seq": 2})
    upserted = await outbox.find_one_and_update(
        {"event_id": "e2"}, {"$setOnInsert": {"seq": 2}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert upserted is not None and upserted["seq"] == 2
    assert await outbox.count_documents({}) == 2
