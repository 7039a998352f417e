"""The worker's guarantees, on an in-memory Kafka consumer (``tests.fakes.kafka``): milliseconds each.

The real-Kafka tests (``tests/integration``, ``tests/e2e``) check the same against a broker; these pin
each guarantee alone: per-contact order, bounded in-flight with pause/resume, commits only past a
contiguous run of finished messages, the revocation drain and the SIGTERM drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

import pytest

from consumer.runtime.worker import Worker, WorkerOptions
from tests.fakes.kafka import FakeConsumer, Record

DEADLINE_S = 2.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Waits for ``condition`` (checked at every turn of the loop), failing after ``DEADLINE_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.001)


async def turns(consumer: FakeConsumer, count: int = 3) -> None:
    """Lets the worker's loop go round ``count`` more fetches: long enough for it to act on what it has."""
    target = consumer.fetches + count
    await until(lambda: consumer.fetches >= target, f"{count} more fetches")


async def settle() -> None:
    """Lets every ready task run (no fetching involved): yields to the event loop a few times."""
    for _ in range(20):
        await asyncio.sleep(0)


@dataclass
class Job:
    record: Record

    @property
    def serial_key(self) -> Hashable | None:
        return self.record.key


@dataclass
class GatedHandler:
    """Each message's handling waits until the test releases its offset (or fails it)."""

    started: list[tuple[int, int]] = field(default_factory=list)
    finished: list[tuple[int, int]] = field(default_factory=list)
    gates: dict[tuple[int, int], asyncio.Event] = field(default_factory=dict)
    failing: set[tuple[int, int]] = field(default_factory=set)
    running: int = 0
    most_running: int = 0

    def prepare(self, record: Record) -> Job:
        return Job(record)

    async def handle(self, job: Job) -> None:
        where = (job.record.partition, job.record.offset)
        self.started.append(where)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate(where).wait()
            if where in self.failing:
                raise RuntimeError(f"handling {where} failed")
            self.finished.append(where)
        finally:
            self.running -= 1

    def gate(self, where: tuple[int, int]) -> asyncio.Event:
        return self.gates.setdefault(where, asyncio.Event())

    def release(self, *offsets: int, partition: int = 0) -> None:
        for offset in offsets:
            self.gate((partition, offset)).set()


@dataclass
class Running:
    worker: Worker
    consumer: FakeConsumer
    handler: GatedHandler
    stop: asyncio.Event
    task: asyncio.Task[None]

    def committed(self, partition: int = 0) -> int | None:
        return self.consumer.committed.get(self.consumer.tp(partition))


@contextlib.asynccontextmanager
async def running(partitions: int = 1, **options: float) -> AsyncIterator[Running]:
    consumer, handler, stop = FakeConsumer(partitions=partitions), GatedHandler(), asyncio.Event()
    settings = {"max_in_flight": 8, "drain_timeout_s": 1.0, "commit_interval_s": 0.0, "fetch_timeout_ms": 5, **options}
    worker = Worker(consumer, handler, WorkerOptions(topic=consumer.topic, **settings))  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run(stop))
    try:
        yield Running(worker, consumer, handler, stop, task)
    finally:
        for gate in handler.gates.values():
            gate.set()
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


async def test_messages_of_one_contact_are_handled_one_after_the_other_in_offset_order() -> None:
    async with running() as run:
        for key in ("alice", "bob", "alice", "alice"):
            run.consumer.feed(key)
        await until(lambda: len(run.handler.started) == 2, "alice's first and bob's message started")
        assert run.handler.started == [(0, 0), (0, 1)], "alice's later messages wait for her first"
        run.handler.release(2, 3)  # finishing later messages first changes nothing: they have not started
        run.handler.release(0)
        await until(lambda: (0, 3) in run.handler.finished, "alice's messages all finished")
        alice = [offset for _, offset in run.handler.finished if offset in (0, 2, 3)]
        assert alice == [0, 2, 3]


async def test_in_flight_is_bounded_and_fetching_pauses_until_a_slot_frees() -> None:
    async with running(max_in_flight=2) as run:
        for number in range(5):
            run.consumer.feed(f"contact-{number}")
        await until(lambda: len(run.handler.started) == 2, "two messages started")
        await until(lambda: run.consumer.paused() == {run.consumer.tp()}, "fetching paused")
        assert run.worker.in_flight == 2
        run.handler.release(0)
        await until(lambda: len(run.handler.started) == 3, "a third message started once a slot freed")
        run.handler.release(1, 2, 3, 4)
        await until(lambda: len(run.handler.finished) == 5, "all finished")
        assert run.handler.most_running == 2
        assert run.consumer.pauses >= 1


async def test_an_offset_is_committed_only_past_a_contiguous_run_of_finished_messages() -> None:
    async with running() as run:
        for number in range(3):
            run.consumer.feed(f"contact-{number}")
        await until(lambda: len(run.handler.started) == 3, "three messages started")
        run.handler.release(1, 2)
        await until(lambda: len(run.handler.finished) == 2, "offsets 1 and 2 finished")
        await turns(run.consumer)  # the loop commits at every turn (commit_interval_s=0)
        assert run.committed() is None, "offset 0 is unfinished: nothing may be committed"
        run.handler.release(0)
        await until(lambda: run.committed() == 3, "everything committed once offset 0 finished")


async def test_a_message_whose_handling_failed_is_never_committed() -> None:
    async with running() as run:
        run.consumer.feed("alice")
        run.consumer.feed("bob")
        run.handler.failing.add((0, 0))
        run.handler.release(0, 1)
        await until(lambda: run.handler.finished == [(0, 1)], "bob's message finished")
        await turns(run.consumer)
        assert run.committed() is None, "the failed message stays uncommitted, so Kafka redelivers it"


async def test_revocation_waits_for_in_flight_work_and_commits_it_before_the_partition_goes() -> None:
    async with running(partitions=2) as run:
        run.consumer.feed("alice", partition=0)
        run.consumer.feed("bob", partition=1)
        await until(lambda: len(run.handler.started) == 2, "both started")
        revoke = asyncio.create_task(run.consumer.revoke(run.consumer.tp(0)))
        await turns(run.consumer)
        assert not revoke.done(), "the revocation waits for the partition's in-flight message"
        run.handler.release(0, partition=0)
        await asyncio.wait_for(revoke, DEADLINE_S)
        assert run.committed(0) == 1, "the finished message was committed before the partition moved"
        assert run.committed(1) is None, "the other partition's unfinished message is untouched"


async def test_revocation_abandons_work_past_the_drain_deadline_without_committing_it() -> None:
    async with running(drain_timeout_s=0.05) as run:
        run.consumer.feed("alice")
        await until(lambda: len(run.handler.started) == 1, "started")
        await asyncio.wait_for(run.consumer.revoke(run.consumer.tp()), DEADLINE_S)
        assert run.committed() is None, "abandoned work is redone by the next owner, so it is not committed"
        assert run.handler.finished == []


async def test_stop_drains_in_flight_work_commits_it_and_returns() -> None:
    async with running() as run:
        run.consumer.feed("alice")
        run.consumer.feed("bob")
        await until(lambda: len(run.handler.started) == 2, "both started")
        run.stop.set()
        await settle()
        assert not run.task.done(), "stop waits for in-flight work"
        run.consumer.feed("carol")  # arrives while the worker drains: it must not be started
        run.handler.release(0, 1)
        await asyncio.wait_for(run.task, DEADLINE_S)
        assert run.committed() == 2
        assert len(run.handler.started) == 2, "nothing starts after stop"


@pytest.mark.parametrize("max_in_flight", [1, 3])
async def test_every_message_is_handled_once_and_everything_is_committed(max_in_flight: int) -> None:
    async with running(partitions=3, max_in_flight=max_in_flight) as run:
        for number in range(30):
            record = run.consumer.feed(f"contact-{number % 7}", partition=number % 3)
            run.handler.release(record.offset, partition=record.partition)
        await until(lambda: len(run.handler.finished) == 30, "all 30 handled")
        await until(lambda: all(run.committed(p) == 10 for p in range(3)), "all committed")
        assert sorted(run.handler.started) == sorted(set(run.handler.started)), "each message handled once"
        assert run.handler.most_running <= max_in_flight
