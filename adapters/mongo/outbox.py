"""The outbox: result events waiting to be published to Kafka by the relay.

``outbox`` holds the entries still to publish: ``{_id: event_id, seq, key, event_type, payload,
created_at, trace, published: false, published_at: null}``; ``trace`` is the W3C context
(``traceparent``/``tracestate``) current when the event was appended, i.e. of the span that produced
it, so the relay, another process, can put it on the Kafka message (absent outside any trace).
``_id`` is the result's ``event_id``, so appending the
same event twice stores it once. ``seq`` gives the relay its publishing order (insertion order): each
append takes the next number of the counter ``outbox_counter`` (``{_id: "seq", n}``) with one
``findAndModify`` ``$inc``, so an append that starts after another one finished always gets a higher
``seq`` (what keeps one contact's or one link's events in causal order, whichever process appends
them). The increment is atomic on MongoDB and on the patched local FerretDB, which holds a collection
lock from a ``findAndModify``'s query to its write (ADR 0009), as the saga's version check needs anyway;
on an unpatched FerretDB two concurrent appends could tie, never invert a causal order. The counter is
created on first use above every ``seq`` claimed before it existed (the ``outbox_seq`` claims of
earlier versions, and the pending entries). Appending took three round trips with those claims (read
the newest, insert one above it, insert the entry), two with the counter (ADR 0017).

Once Kafka has acknowledged an entry, the relay moves it to ``outbox_published`` (same document,
``published: true`` and ``published_at`` set), where it stays for the retention period. Moving rather than
flagging keeps ``outbox`` as small as the backlog: FerretDB uses no secondary index, so each relay poll
scans the whole collection, and with a week of published entries kept beside the pending ones an idle
poll every 20 ms would read them all. Entries flagged ``published: true`` inside ``outbox`` (written by a
relay of the version before the move) are skipped by the relay and purged like the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from opentelemetry import propagate
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from adapters.mongo.errors import store_errors
from domain.errors import RetryableError
from domain.stored import OutboxEntry, StoredEvent

Document = dict[str, Any]
DUPLICATE_KEY = 11000
COUNTER = "seq"  # the one document of ``outbox_counter``
COUNTER_ATTEMPTS = 8  # only a counter being created by concurrent first appends makes one try again


class ResultEvent(Protocol):
    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def contact_id(self) -> str | None: ...
    def model_dump_json(self) -> str: ...


class MongoOutbox:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._entries = database["outbox"]
        self._published = database["outbox_published"]
        self._seqs = database["outbox_seq"]  # earlier versions' claims: read once, to start the counter above
        self._counter = database["outbox_counter"]

    async def ensure_indexes(self) -> None:
        with store_errors("outbox index creation"):
            await self._entries.create_index([("published", ASCENDING), ("seq", ASCENDING)])
            await self._entries.create_index([("published", ASCENDING), ("published_at", ASCENDING)])
            await self._published.create_index([("published_at", ASCENDING)])

    async def append(self, event: ResultEvent) -> None:
        """Stores ``event`` once: a second append of the same ``event_id`` changes nothing."""
        document: Document = {
            "_id": event.event_id,
            "key": event.contact_id,
            "event_type": event.event_type,
            "payload": event.model_dump_json(),
            "published": False,
            "published_at": None,
        }
        trace = _current_trace()
        if trace:
            document["trace"] = trace
        with store_errors("outbox append"):
            try:
                await self._entries.insert_one(
                    {**document, "seq": await self._next_seq(), "created_at": datetime.now(UTC)}
                )
            except DuplicateKeyError:
                return  # appended before (a redelivery, or a concurrent append of the same event)

    async def append_unless_published(self, event: ResultEvent) -> None:
        """``append``, unless ``outbox_published`` holds the event (published within the retention)."""
        with store_errors("outbox lookup"):
            if await self._published.find_one({"_id": event.event_id}, {"_id": 1}) is not None:
                return
        await self.append(event)

    async def _next_seq(self) -> int:
        """A ``seq`` no other append got, above every ``seq`` taken before this call started."""
        for _ in range(COUNTER_ATTEMPTS):
            counter = await self._counter.find_one_and_update(
                {"_id": COUNTER}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER
            )
            if counter is not None:
                return int(counter["n"])
            await self._start_counter()
        raise RetryableError("internal_error", "outbox sequence counter could not be created")

    async def _start_counter(self) -> None:
        # First append on this database, or on one written by a version that claimed in ``outbox_seq``:
        # start above those claims and the pending entries. ``$max`` never lowers a counter that a
        # concurrent first append created meanwhile.
        newest_claim = await self._seqs.find_one({}, sort=[("_id", DESCENDING)])
        above = max(int(newest_claim["_id"]) if newest_claim else 0, await self._highest_entry_seq())
        # Created concurrently (an upsert is a query then an insert): the next $inc uses that one.
        with contextlib.suppress(DuplicateKeyError):
            await self._counter.update_one({"_id": COUNTER}, {"$max": {"n": above}}, upsert=True)

    async def _highest_entry_seq(self) -> int:
        last = await self._entries.find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return int(last["seq"]) if last else 0

    async def unpublished(self, limit: int, after_seq: int | None = None) -> list[OutboxEntry]:
        """The oldest unpublished entries (above ``after_seq`` if given), in insertion order."""
        query: Document = {"published": False}
        if after_seq is not None:
            query["seq"] = {"$gt": after_seq}
        with store_errors("outbox read"):
            cursor = self._entries.find(query).sort("seq", ASCENDING).limit(limit)
            return [
                OutboxEntry(
                    event_id=doc["_id"],
                    seq=doc["seq"],
                    key=doc["key"],
                    event_type=doc["event_type"],
                    payload=doc["payload"].encode(),
                    created_at=_aware(doc["created_at"]),
                    trace=tuple((key, str(value)) for key, value in (doc.get("trace") or {}).items()),
                )
                async for doc in cursor
            ]

    async def mark_published(
        self, entries: list[OutboxEntry], positions: Mapping[str, tuple[int, int]] | None = None
    ) -> None:
        """Moves ``entries`` (as read by ``unpublished``) to ``outbox_published``; marking one twice is harmless.
        ``positions``: the Kafka partition and offset of each event id, as the broker acknowledged them.

        Copied first, deleted second: a crash in between leaves the entry pending, so it is published again
        (at least once) and its second copy is refused by the unique ``_id``.
        """
        if not entries:
            return
        now = datetime.now(UTC)
        with store_errors("outbox mark published"):
            try:
                documents = [
                    _published_document(entry, now, (positions or {}).get(entry.event_id)) for entry in entries
                ]
                await self._published.insert_many(documents, ordered=False)
            except BulkWriteError as error:
                if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                    raise
            await self._entries.delete_many({"_id": {"$in": [entry.event_id for entry in entries]}})

    async def purge_published(self, older_than: timedelta) -> int:
        """Deletes entries published more than ``older_than`` ago; returns how many."""
        with store_errors("outbox purge"):
            cutoff = datetime.now(UTC) - older_than
            moved = await self._published.delete_many({"published_at": {"$lt": cutoff}})
            flagged = await self._entries.delete_many({"published": True, "published_at": {"$lt": cutoff}})
            return moved.deleted_count + flagged.deleted_count

    async def find_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """The stored events among ``event_ids``, published (within the retention) or pending, in
        insertion order."""
        query = {"_id": {"$in": list(event_ids)}}
        with store_errors("outbox lookup"):
            published = [doc async for doc in self._published.find(query)]
            pending = [doc async for doc in self._entries.find(query) if not doc.get("published")]
        return [_stored_event(doc) for doc in sorted([*published, *pending], key=lambda doc: doc["seq"])]

    async def backlog(self) -> tuple[int, datetime | None]:
        """How many entries wait, and when the oldest of them was appended."""
        with store_errors("outbox backlog"):
            count = await self._entries.count_documents({"published": False})
            oldest = await self._entries.find_one({"published": False}, sort=[("seq", ASCENDING)])
            return count, _aware(oldest["created_at"]) if oldest else None


def _published_document(entry: OutboxEntry, published_at: datetime, position: tuple[int, int] | None) -> Document:
    return {
        "partition": position[0] if position else None,
        "offset": position[1] if position else None,
        "_id": entry.event_id,
        "seq": entry.seq,
        "key": entry.key,
        "event_type": entry.event_type,
        "payload": entry.payload.decode(),
        "created_at": entry.created_at,
        "published": True,
        "published_at": published_at,
        "trace": dict(entry.trace),
    }


def _current_trace() -> dict[str, str]:
    """The current span's W3C context (the span producing the event); empty outside a trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {key: carrier[key] for key in ("traceparent", "tracestate") if key in carrier}


def _stored_event(doc: Document) -> StoredEvent:
    published_at = doc.get("published_at")
    return StoredEvent(
        event_id=doc["_id"],
        event_type=doc["event_type"],
        payload=doc["payload"].encode(),
        created_at=_aware(doc["created_at"]),
        published_at=_aware(published_at) if published_at else None,
        partition=doc.get("partition"),
        offset=doc.get("offset"),
    )


def _aware(moment: datetime) -> datetime:
    # BSON dates come back naive (UTC) unless the client is tz_aware.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
