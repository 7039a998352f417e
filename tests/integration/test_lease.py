"""The relay lease on the real store: one holder at a time, even when contenders race (found by the
reliability suite: on FerretDB a conditional ``find_one_and_update`` let two relays take one lease)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.lease import MongoLease

LENGTH = timedelta(seconds=0.6)


def contenders(db: AsyncDatabase[dict[str, Any]], name: str, count: int = 3) -> list[MongoLease]:
    return [MongoLease(db, name, f"relay-{i}", LENGTH) for i in range(count)]


async def test_racing_contenders_never_both_win(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    for round_ in range(8):
        leases = contenders(mongo_db, f"race-{round_}")
        won = await asyncio.gather(*(lease.acquire() for lease in leases))
        assert sum(won) == 1, f"round {round_}: {won}"
        # The lease lapses; everyone (the old holder too) races for the next term.
        await asyncio.sleep(LENGTH.total_seconds() + 0.05)
        won = await asyncio.gather(*(lease.acquire() for lease in leases))
        assert sum(won) == 1, f"round {round_}, after expiry: {won}"


async def test_holder_renews_standby_waits_and_takes_over_on_release(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    holder, standby = contenders(mongo_db, "handover", 2)
    assert await holder.acquire()
    for _ in range(4):  # renewing keeps it well past one lease length
        await asyncio.sleep(LENGTH.total_seconds() / 3)
        assert await holder.acquire()
        assert not await standby.acquire()
    state = await holder.current()
    assert state is not None and state.owner == holder.owner
    view = await mongo_db["leases"].find_one({"_id": "handover"})
    assert view is not None and view["owner"] == holder.owner
    await holder.release()
    assert await standby.acquire()
    assert not await holder.acquire()
    state = await standby.current()
    assert state is not None and state.owner == standby.owner


async def test_a_holder_that_lapsed_does_not_hold_once_another_took_over(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    slow, standby = contenders(mongo_db, "lapse", 2)
    assert await slow.acquire()
    await asyncio.sleep(LENGTH.total_seconds() + 0.05)  # the holder stalled past its lease
    assert await standby.acquire()
    assert not await slow.acquire()
    assert await standby.acquire()


async def test_a_lease_held_outside_the_terms_is_respected_until_it_expires(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    # What a relay of the previous version (a plain ``leases`` document) holds during a rolling upgrade.
    held_until = datetime.now(UTC) + timedelta(hours=1)
    await mongo_db["leases"].insert_one({"_id": "legacy", "owner": "old:1:x", "expires_at": held_until})
    (relay,) = contenders(mongo_db, "legacy", 1)
    assert not await relay.acquire()
    await mongo_db["leases"].update_one({"_id": "legacy"}, {"$set": {"expires_at": datetime.now(UTC)}})
    assert await relay.acquire()
    view = await mongo_db["leases"].find_one({"_id": "legacy"})
    assert view is not None and view["owner"] == relay.owner
