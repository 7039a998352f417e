"""A lease in MongoDB that makes one relay active among several.

Document: ``{_id: name, owner, expires_at, renewed_at}``. The holder renews it well before it lapses;
a standby takes it once ``expires_at`` has passed. Acquire and renew are one atomic
``find_one_and_update``; an upsert that loses the race hits the unique ``_id`` and reports "not held".
Clocks of the relays' hosts are assumed to agree within a small fraction of the lease length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors


@dataclass(frozen=True)
class LeaseState:
    owner: str
    expires_at: datetime


class MongoLease:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], name: str, owner: str, length: timedelta) -> None:
        self._leases = database["leases"]
        self._name = name
        self.owner = owner
        self._length = length

    async def acquire(self) -> bool:
        """Takes or renews the lease; True when this owner holds it until ``now + length``."""
        now = datetime.now(UTC)
        with store_errors("lease acquire"):
            try:
                held = await self._leases.find_one_and_update(
                    {"_id": self._name, "$or": [{"owner": self.owner}, {"expires_at": {"$lt": now}}]},
                    {"$set": {"owner": self.owner, "expires_at": now + self._length, "renewed_at": now}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                return False
        return held is not None and held["owner"] == self.owner

    async def release(self) -> None:
        """Lets a standby take over at once (on graceful shutdown)."""
        with store_errors("lease release"):
            await self._leases.update_one(
                {"_id": self._name, "owner": self.owner}, {"$set": {"expires_at": datetime.now(UTC)}}
            )

    async def current(self) -> LeaseState | None:
        with store_errors("lease read"):
            doc = await self._leases.find_one({"_id": self._name})
        if doc is None:
            return None
        expires = doc["expires_at"]
        return LeaseState(doc["owner"], expires if expires.tzinfo else expires.replace(tzinfo=UTC))
