"""The Kafka side of the worker: fetch, run concurrently (serialised per contact), commit safely.

Guarantees this module gives, whatever the handler does:
- at most ``max_in_flight`` messages are being handled; when the bound is reached, fetching pauses;
- messages with the same ``serial_key`` (the contact) are handled one after the other, in offset order;
- a partition's offset is committed only past a contiguous run of messages whose handler returned
  (the handler returns only once the message's outcome is durable: result in the outbox or dead letter);
- on revocation, no new work starts for the revoked partitions; in-flight work gets ``drain_timeout_s``
  to finish, then is abandoned (cancelled, not committed: the next owner redoes it, idempotently);
- ``stop`` (SIGTERM) drains the same way, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from consumer.ports import ConsumedMessage, Job, MessageConsumer, MessageHandler
from consumer.runtime.offsets import OffsetTracker

log = logging.getLogger("paylink.worker")


@dataclass(frozen=True)
class WorkerOptions:
    topic: str
    max_in_flight: int = 128
    drain_timeout_s: float = 20.0
    commit_interval_s: float = 0.2
    fetch_timeout_ms: int = 100


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._worker.release(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})


class Worker:
    def __init__(self, consumer: MessageConsumer, handler: MessageHandler, options: WorkerOptions) -> None:
        self._consumer = consumer
        self._handler = handler
        self._options = options
        self._offsets = OffsetTracker()
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._tails: dict[Hashable, asyncio.Task[None]] = {}
        self._releasing: set[TopicPartition] = set()
        self._slot_freed = asyncio.Event()
        self._last_commit = 0.0
        self.assigned = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([self._options.topic], listener=_Rebalance(self))
        try:
            while not stop.is_set():
                await self._fetch_once(stop)
                await self._commit(force=False)
        finally:
            await self._drain(set(self._tasks.values()))
            await self._commit(force=True)

    async def _fetch_once(self, stop: asyncio.Event) -> None:
        free = self._options.max_in_flight - len(self._tasks)
        assignment = self._consumer.assignment()
        self.assigned = bool(assignment)
        if free <= 0:
            self._consumer.pause(*assignment)
            self._slot_freed.clear()
            waiter = asyncio.ensure_future(self._slot_freed.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                [waiter, stopper],
                timeout=self._options.commit_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            stopper.cancel()
            return
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)
        batch = await self._consumer.getmany(timeout_ms=self._options.fetch_timeout_ms, max_records=free)
        if stop.is_set():
            return  # stopping while the fetch waited: what it brought stays uncommitted, for the next owner
        for partition, records in batch.items():
            if partition in self._releasing:
                continue
            for record in records:
                self._start(partition, record)

    def _start(self, partition: TopicPartition, record: ConsumedMessage) -> None:
        job = self._handler.prepare(record)
        previous = self._tails.get(job.serial_key) if job.serial_key is not None else None
        self._offsets.started(partition, record.offset)
        task = asyncio.create_task(self._run_job(job, previous))
        self._tasks[task] = partition
        if job.serial_key is not None:
            self._tails[job.serial_key] = task
        task.add_done_callback(lambda done: self._finished(done, job, partition, record.offset))

    async def _run_job(self, job: Job, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            # Same contact: wait for the earlier message, whatever its fate, to keep offset order.
            await asyncio.wait([previous])
        await self._handler.handle(job)

    def _finished(self, task: asyncio.Task[None], job: Job, partition: TopicPartition, offset: int) -> None:
        self._tasks.pop(task, None)
        if job.serial_key is not None and self._tails.get(job.serial_key) is task:
            del self._tails[job.serial_key]
        self._slot_freed.set()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # Not marked done: the offset stays uncommitted and the message is redelivered later.
            log.error(
                "handler failed; message will be redelivered",
                exc_info=error,
                extra={"partition": str(partition), "offset": offset},
            )
            return
        self._offsets.finished(partition, offset)

    async def release(self, partitions: set[TopicPartition]) -> None:
        """Revocation: finish (or abandon) in-flight work of ``partitions`` and commit what is done."""
        if not partitions:
            return
        self._releasing |= partitions
        try:
            await self._drain(partitions)
            await self._commit(force=True, partitions=partitions)
        finally:
            self._offsets.forget(set(partitions))
            self._releasing -= partitions

    async def _drain(self, partitions: set[TopicPartition]) -> None:
        tasks = [task for task, tp in self._tasks.items() if tp in partitions]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self._options.drain_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "abandoned in-flight messages after the drain deadline",
                extra={"abandoned": len(pending), "finished": len(done)},
            )
            await asyncio.wait(pending)

    async def _commit(self, *, force: bool, partitions: set[TopicPartition] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self._options.commit_interval_s:
            return
        self._last_commit = now
        offsets = self._offsets.to_commit(partitions)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
            self._offsets.committed(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as error:
            # A rebalance raced the commit: the new owner redelivers, and the saga skips finished work.
            log.warning("offset commit failed; messages may be redelivered", extra={"error": repr(error)})
