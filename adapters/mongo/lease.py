"""A lease in MongoDB that makes one relay active among several.

The lease is a sequence of *terms*. Taking the lease means inserting the document of the next term into
``lease_terms`` (``{_id: "<name>:<term>", lease, term, owner, expires_at, claimed_at}``): an insert on a
unique ``_id`` is atomic on MongoDB and on FerretDB alike, so of several relays racing for a lapsed lease
exactly one wins. (A conditional ``find_one_and_update`` is not enough: FerretDB's reads, then writes,
and the reliability suite saw two relays take one expired lease at once — 191 times out of 200 races.)

- The holder renews by pushing its own term's ``expires_at``; nobody else writes that document. A
  renewal counts only if it completed before the term's previous expiry (less a margin): a standby that
  saw the term expired may already have claimed the next one.
- A standby (or a holder that renewed too late) claims term ``n + 1`` once the newest term ``n`` has
  expired; a claim that hits the unique ``_id`` lost the race.
- ``release`` expires the holder's term at once, so a standby takes over without waiting.

``leases`` keeps a readable view for operators and tests, ``{_id: name, owner, expires_at, renewed_at,
term}``, written by the holder after each claim or renewal. A view naming an owner the terms do not know
(a relay of the version before terms, during a rolling upgrade) is respected until it expires. Old terms
are pruned as new ones are claimed.
Every expiry is judged by one clock, the store's (``hello``'s ``localTime``; ``$currentDate`` on
release): relays whose hosts' clocks disagree by minutes still agree on who holds the lease. (With each
relay's own wall clock, a relay 90 s ahead saw every term expired and took the lease while its holder
kept renewing: two active relays — reliability suite, ``skewed_clocks``, issue #17.) The holder measures
its own deadline on its monotonic clock from the moment it asked, so it gives up no later than the store
would let a standby in.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.stored import LeaseState

TERMS_KEPT = 8


class MongoLease:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], name: str, owner: str, length: timedelta) -> None:
        self._database = database
        self._leases = database["leases"]
        self._terms = database["lease_terms"]
        self._name = name
        self.owner = owner
        self._length = length
        self._margin = length / 10
        self._term: int | None = None  # the term this owner holds, as far as it knows
        self._deadline: float | None = None  # … until then (monotonic; the store's expiry less the margin)

    def _term_id(self, term: int) -> str:
        return f"{self._name}:{term:012d}"

    async def acquire(self) -> bool:
        """Takes or renews the lease; True when this owner holds it until ``now + length`` (store time)."""
        asked = time.monotonic()  # before the store read its clock: the store's expiry is later than ours
        with store_errors("lease acquire"):
            now = await self._store_now()
            holding = self._term is not None and self._deadline is not None and asked < self._deadline
            if holding and await self._renew(now, asked):
                return True
            self._term = self._deadline = None
            newest = await self._newest()
            if newest is not None and _aware(newest["expires_at"]) >= now:
                return False  # held (possibly by this owner, whose renewal came too late: it waits too)
            view = await self._leases.find_one({"_id": self._name})
            if (
                view is not None
                and _aware(view["expires_at"]) >= now
                and view.get("owner") not in (self.owner, newest["owner"] if newest else None)
            ):
                return False  # held outside the terms: a relay of an earlier version (rolling upgrade)
            term = int(newest["term"]) + 1 if newest is not None else 1
            expires = now + self._length
            try:
                await self._terms.insert_one(
                    {
                        "_id": self._term_id(term),
                        "lease": self._name,
                        "term": term,
                        "owner": self.owner,
                        "expires_at": expires,
                        "claimed_at": now,
                    }
                )
            except DuplicateKeyError:
                return False  # another contender claimed this term first
            self._term, self._deadline = term, self._deadline_from(asked)
            await self._show(now, expires)
            await self._terms.delete_many({"lease": self._name, "term": {"$lte": term - TERMS_KEPT}})
            return True

    def _deadline_from(self, asked: float) -> float:
        return asked + (self._length - self._margin).total_seconds()

    async def _store_now(self) -> datetime:
        """The store's clock: the one clock every contender compares expiries with."""
        reply = await self._database.client.admin.command("hello")
        return _aware(reply["localTime"])

    async def _renew(self, now: datetime, asked: float) -> bool:
        assert self._term is not None and self._deadline is not None
        expires = now + self._length
        result = await self._terms.update_one(
            {"_id": self._term_id(self._term), "owner": self.owner}, {"$set": {"expires_at": expires}}
        )
        if result.matched_count != 1 or time.monotonic() >= self._deadline:
            return False  # gone, or too late to be sure no standby saw the term expired
        self._deadline = self._deadline_from(asked)
        await self._show(now, expires)
        return True

    async def _newest(self) -> dict[str, Any] | None:
        return await self._terms.find_one({"lease": self._name}, sort=[("term", DESCENDING)])

    async def _show(self, now: datetime, expires: datetime) -> None:
        view = {"owner": self.owner, "expires_at": expires, "renewed_at": now, "term": self._term}
        try:
            await self._leases.update_one({"_id": self._name}, {"$set": view}, upsert=True)
        except DuplicateKeyError:  # two first-ever upserts raced: the document exists now
            await self._leases.update_one({"_id": self._name}, {"$set": view})

    async def release(self) -> None:
        """Lets a standby take over at once (on graceful shutdown)."""
        if self._term is None:
            return
        expire_now = {"$currentDate": {"expires_at": True}}  # the store's clock, like every expiry
        with store_errors("lease release"):
            await self._terms.update_one({"_id": self._term_id(self._term), "owner": self.owner}, expire_now)
            await self._leases.update_one({"_id": self._name, "owner": self.owner}, expire_now)
        self._term = self._deadline = None

    async def current(self) -> LeaseState | None:
        with store_errors("lease read"):
            doc = await self._leases.find_one({"_id": self._name}) or await self._newest()
        if doc is None:
            return None
        return LeaseState(doc["owner"], _aware(doc["expires_at"]))


def _aware(moment: datetime) -> datetime:
    # BSON dates come back naive (UTC) unless the client is tz_aware.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
