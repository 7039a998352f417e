"""An in-memory Kafka consumer group member, as strict as aiokafka's ``AIOKafkaConsumer`` where the worker
relies on it (``consumer.ports.MessageConsumer``).

- ``getmany`` hands out records of assigned, unpaused partitions in offset order, at most ``max_records``,
  and waits up to ``timeout_ms`` for new ones (like a fetch that finds nothing);
- ``commit`` refuses partitions that are not assigned (aiokafka raises ``IllegalStateError``) and
  offsets beyond what was handed out;
- ``revoke`` is a rebalance taking partitions away: the listener's ``on_partitions_revoked`` is awaited
  first, then the partitions go, and their position falls back to the committed offset (what the next
  owner would read from); ``assign`` gives them back.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


@dataclass
class FakeConsumer:
    topic: str = "requests"
    partitions: int = 1
    log: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    _assigned: set[TopicPartition] = field(default_factory=set)
    _paused: set[TopicPartition] = field(default_factory=set)
    _position: dict[TopicPartition, int] = field(default_factory=dict)
    _listener: Any = None
    _fed: asyncio.Event = field(default_factory=asyncio.Event)
    pauses: int = 0
    fetches: int = 0

    def __post_init__(self) -> None:
        for number in range(self.partitions):
            tp = TopicPartition(self.topic, number)
            self.log[tp] = []
            self._position[tp] = 0

    def tp(self, number: int = 0) -> TopicPartition:
        return TopicPartition(self.topic, number)

    def feed(
        self, key: str | None, value: bytes = b"{}", partition: int = 0, headers: tuple[tuple[str, bytes], ...] = ()
    ) -> Record:
        tp = self.tp(partition)
        record = Record(self.topic, partition, len(self.log[tp]), key.encode() if key else None, value, headers)
        self.log[tp].append(record)
        self._fed.set()
        return record

    # --- MessageConsumer ---------------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert topics == [self.topic], f"subscribed to {topics}, expected [{self.topic!r}]"
        self._listener = listener
        self._assigned = set(self.log)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._check_assigned(partitions)
        if partitions:
            self.pauses += 1
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._check_assigned(partitions)
        self._paused -= set(partitions)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        self.fetches += 1
        batch = self._take(max_records)
        if not batch and timeout_ms:
            self._fed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fed.wait(), timeout_ms / 1000)
            batch = self._take(max_records)
        return batch

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        assert offsets is not None, "the worker commits explicit offsets, never what was fetched"
        self._check_assigned(tuple(offsets))
        for tp, offset in offsets.items():
            assert offset <= self._position[tp], f"commit of {tp} at {offset} beyond what was fetched"
        self.committed.update(offsets)
        self.commits.append(dict(offsets))

    # --- the group's side ----------------------------------------------------------------------------

    async def revoke(self, *partitions: TopicPartition) -> None:
        await self._listener.on_partitions_revoked(list(partitions))
        self._assigned -= set(partitions)
        self._paused -= set(partitions)
        for tp in partitions:
            self._position[tp] = self.committed.get(tp, 0)

    async def assign(self, *partitions: TopicPartition) -> None:
        self._assigned |= set(partitions)
        await self._listener.on_partitions_assigned(list(partitions))
        self._fed.set()

    def _take(self, max_records: int | None) -> dict[TopicPartition, list[Record]]:
        budget = max_records if max_records is not None else 1_000_000
        batch: dict[TopicPartition, list[Record]] = {}
        for tp in sorted(self._assigned - self._paused):
            available = self.log[tp][self._position[tp] : self._position[tp] + budget]
            if available:
                batch[tp] = available
                self._position[tp] += len(available)
                budget -= len(available)
        return batch

    def _check_assigned(self, partitions: tuple[TopicPartition, ...]) -> None:
        foreign = set(partitions) - self._assigned
        if foreign:
            raise IllegalStateError(f"partitions {sorted(foreign)} are not assigned")
