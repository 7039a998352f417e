"""The outbox relay: publishes result events from MongoDB to Kafka, in insertion order.

One relay among several is active, by a lease in MongoDB; the others wait and take over within about
one lease length when the active one dies (or at once when it stops gracefully). The active relay
publishes a batch (up to 2,000 entries) with an idempotent producer (``acks=all``), waits for every
acknowledgement, and only then marks the batch published (moves it to ``outbox_published``): a crash in
between republishes it (at least once; consumers dedupe on ``event_id``).

Pipelined: while a full batch is being marked, the next one (entries above the last ``seq`` sent) is read
and sent; at most one marking is in flight, and it settles before the next one starts, before the relay
goes idle and before it lets the lease go. A failed marking makes the next read start again from the
oldest pending entry, so the unmarked batch goes out again ahead of what followed it (at least once, in
order). After a short batch the next read starts from the oldest pending entry too: an append that
claimed a lower ``seq`` but committed late is never skipped for longer than a backlog lasts.

Polling adapts (no change streams on FerretDB): right after a batch the next poll comes after
``poll_min_interval`` (5 ms by default), each empty poll doubles the wait up to ``poll_interval`` (10 ms),
so a result following another is picked up sooner while an idle relay costs the store at most one read
per ``poll_interval``; a poll reads only pending entries, since published ones have moved out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import InvalidProducerIdMapping, KafkaError, OutOfOrderSequenceNumber, UnknownProducerId

from consumer import metrics, tracing
from consumer.ports import Lease, MessageProducer, OutboxReader
from domain.errors import RetryableError
from domain.stored import OutboxEntry

log = logging.getLogger("paylink.relay")

# A broker that lost this producer's state (restarted without it, or the producer id expired) refuses
# every send with one of these, forever: only a new producer, with a new producer id, gets past it.
PRODUCER_STATE_LOST = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerIdMapping)
Renew = Callable[[MessageProducer], Awaitable[MessageProducer]]

CE_SOURCE = "paylink"


@dataclass(frozen=True)
class RelayOptions:
    topic: str
    lease_length_s: float = 5.0
    poll_interval_s: float = 0.01
    poll_min_interval_s: float = 0.005
    batch_size: int = 2000
    retention: timedelta = timedelta(days=7)
    purge_interval_s: float = 60.0


@dataclass
class RelayStats:
    published: int = 0
    batches: int = 0
    purged: int = 0
    active: bool = False
    fenced: int = 0  # batches read but not sent: the lease might have passed while they were read


def headers_for(entry: OutboxEntry) -> list[tuple[str, bytes]]:
    return [
        ("ce_id", entry.event_id.encode()),
        ("ce_type", entry.event_type.encode()),
        ("ce_source", CE_SOURCE.encode()),
        ("ce_specversion", b"1.0"),
        ("ce_time", entry.created_at.isoformat().encode()),
        ("content-type", b"application/json"),
        # The span that produced the event (ADR 0015): consumers of results continue the request's trace.
        *((key, value.encode()) for key, value in entry.trace),
    ]


class Relay:
    def __init__(
        self,
        outbox: OutboxReader,
        lease: Lease,
        producer: MessageProducer,
        options: RelayOptions,
        renew: Renew | None = None,
    ) -> None:
        """``renew`` replaces a producer the broker no longer accepts: it gets the old one and returns a
        started new one (stopping the old); without it the relay keeps retrying with the same producer."""
        self._outbox = outbox
        self._lease = lease
        self.producer = producer
        self._renew = renew
        self._options = options
        self._renewed_at = -float("inf")
        self._last_purge = time.monotonic()
        self.stats = RelayStats()
        self._marking: asyncio.Task[None] | None = None  # the previous batch's move to outbox_published
        self._sent_up_to: int | None = None  # read above this seq while that batch is being marked

    async def run(self, stop: asyncio.Event) -> None:
        idle = self._options.poll_interval_s
        try:
            while not stop.is_set():
                try:
                    if not await self._hold_lease():
                        await self.settle_marking()
                        await _wait(stop, self._options.lease_length_s / 5)
                        continue
                    if await self.publish_batch() > 0:
                        idle = self._options.poll_min_interval_s
                        continue
                    await self._purge_if_due()
                    await _wait(stop, idle)
                    idle = min(idle * 2, self._options.poll_interval_s)
                except RetryableError as error:
                    log.warning("relay store unavailable; retrying", extra={"error": error.message})
                    await _wait(stop, 0.5)
                except PRODUCER_STATE_LOST as error:
                    await self._renew_producer(error)
                    await _wait(stop, 1.0)
                except KafkaError as error:
                    # The broker is down or electing leaders (sends and metadata waits time out): the batch
                    # was not marked published, so it goes out again once Kafka answers (at least once).
                    log.warning("Kafka unavailable; the batch will be published again", extra={"error": repr(error)})
                    await _wait(stop, 1.0)
                except Exception:
                    # One unexpected error must not end the relay: PyMongo's async server selection once raised
                    # "RuntimeError: cannot wait on un-acquired lock" during a MongoDB outage (reliability suite,
                    # ferretdb_outage). Nothing was marked published, so the batch is simply tried again.
                    log.exception("unexpected error in the relay loop; retrying")
                    await _wait(stop, 1.0)
        finally:
            with contextlib.suppress(Exception):  # unmarked entries are published again by the next holder
                await self.settle_marking()
            if self.stats.active:
                with contextlib.suppress(RetryableError):  # else the lease lapses on its own
                    await self._lease.release()
                metrics.LEASE_ACTIVE.set(0)

    async def _renew_producer(self, error: Exception) -> None:
        log.warning(
            "the broker lost this producer's state; the batch goes out again with a new producer",
            extra={"error": repr(error), "renewing": self._renew is not None},
        )
        if self._renew is None:
            return
        try:
            self.producer = await self._renew(self.producer)
        except KafkaError as failure:  # the broker is still away: the next failed batch tries again
            log.warning("could not start a new producer yet", extra={"error": repr(failure)})

    async def _hold_lease(self) -> bool:
        # Renew at a third of the lease so one slow round trip never lets it lapse while active.
        if self.stats.active and time.monotonic() - self._renewed_at < self._options.lease_length_s / 3:
            return True
        asked = time.monotonic()  # before the store stamped the term: the lease runs at least this long
        active = await self._lease.acquire()
        if active != self.stats.active:
            log.info("relay lease %s", "acquired" if active else "lost", extra={"owner": self._lease.owner})
        self.stats.active = active
        metrics.LEASE_ACTIVE.set(1 if active else 0)
        if active:
            self._renewed_at = asked
        return active

    def _still_holding(self) -> bool:
        """Whether the lease surely has not passed since the last renewal (a tenth of it kept as margin,
        as the lease keeps): a batch read slowly (a stalled store) is not sent by a relay that may have
        lost the lease meanwhile — its successor publishes it (reliability ``mongo_partition_relay``)."""
        return time.monotonic() - self._renewed_at < self._options.lease_length_s * 0.9

    async def settle_marking(self) -> None:
        """Waits for the previous batch's marking; if it failed, re-reads from the oldest pending entry."""
        marking, self._marking = self._marking, None
        if marking is None:
            return
        try:
            await marking
        except BaseException:
            self._sent_up_to = None
            raise

    async def publish_batch(self) -> int:
        """Publishes the oldest unpublished entries not being marked already; returns how many. Their
        marking may still be in flight on return (``settle_marking``)."""
        try:
            return await self._publish_batch()
        except BaseException:
            self._sent_up_to = None  # whatever was sent but not marked goes out again, in order
            raise

    async def _publish_batch(self) -> int:
        entries = await self._outbox.unpublished(self._options.batch_size, after_seq=self._sent_up_to)
        if not entries or not self._still_holding():
            await self.settle_marking()
            self._sent_up_to = None  # the next read starts from the oldest pending entry
            if entries:
                self.stats.fenced += 1
            return 0
        acknowledgements: list[Any] = []
        spans = tracing.ProduceSpans(self._options.topic)
        try:
            for entry in entries:
                spans.start(entry)
                acknowledgements.append(
                    await self.producer.send(
                        self._options.topic,
                        entry.payload,
                        key=entry.key.encode() if entry.key else None,
                        headers=headers_for(entry),
                    )
                )
        finally:
            # Every send of the batch settles (delivered or failed) before anything else happens, so a
            # failed batch is never re-sent while parts of it are still in flight (order, stray errors).
            outcomes = await asyncio.gather(*acknowledgements, return_exceptions=True)
            spans.end(outcomes)
        failed = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failed is not None:
            raise failed
        _log_batch(entries, outcomes)
        acknowledged = datetime.now(UTC)
        for entry in entries:
            metrics.PUBLISH_LAG.observe(max(0.0, (acknowledged - entry.created_at).total_seconds()))
        metrics.RELAY_PUBLISHED.inc(len(entries))
        await self.settle_marking()  # one marking in flight at most, and in batch order
        positions = _positions(entries, outcomes)
        self._marking = asyncio.ensure_future(self._outbox.mark_published(entries, positions))
        # Only a full batch suggests more behind it: then read past it while it is being marked.
        self._sent_up_to = entries[-1].seq if len(entries) == self._options.batch_size else None
        if self._sent_up_to is None:
            await self.settle_marking()
        self.stats.published += len(entries)
        self.stats.batches += 1
        return len(entries)

    async def _purge_if_due(self) -> None:
        if time.monotonic() - self._last_purge < self._options.purge_interval_s:
            return
        self._last_purge = time.monotonic()
        purged = await self._outbox.purge_published(self._options.retention)
        self.stats.purged += purged
        if purged:
            log.info("purged published outbox entries", extra={"purged": purged})


def _log_batch(entries: list[OutboxEntry], outcomes: list[Any]) -> None:
    """One info line per batch (count, first/last offset per partition), one debug line per event."""
    offsets: dict[int, list[int]] = {}
    for entry, sent in zip(entries, outcomes, strict=True):
        partition, offset = getattr(sent, "partition", None), getattr(sent, "offset", None)
        if isinstance(partition, int) and isinstance(offset, int):
            offsets.setdefault(partition, []).append(offset)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "result published",
                extra={
                    "event_id": entry.event_id,
                    "event_type": entry.event_type,
                    "partition": partition,
                    "offset": offset,
                    "trace_id": tracing.stored_trace_id(entry.trace),
                },
            )
    spans = {str(p): [min(found), max(found)] for p, found in sorted(offsets.items())}
    log.info("published a batch of results", extra={"count": len(entries), "offsets": spans})


def _positions(entries: list[OutboxEntry], acknowledgements: list[Any]) -> dict[str, tuple[int, int]]:
    """Each event's Kafka partition and offset, from the broker's acknowledgements (``RecordMetadata``),
    for ``paylink show``."""
    return {
        entry.event_id: (ack.partition, ack.offset)
        for entry, ack in zip(entries, acknowledgements, strict=True)
        if isinstance(getattr(ack, "partition", None), int) and isinstance(getattr(ack, "offset", None), int)
    }


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
