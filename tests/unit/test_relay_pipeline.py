"""The relay's pipelining (issue 16): the next batch is read and sent while the previous one is being
marked, yet nothing is marked before the broker acknowledged it, and a failed marking republishes in
order; and its adaptive idle poll."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.runtime import relay as relay_module
from consumer.runtime.relay import Relay, RelayOptions
from domain.errors import RetryableError
from domain.stored import OutboxEntry


def _entries(count: int) -> list[OutboxEntry]:
    now = datetime.now(UTC)
    return [OutboxEntry(f"e{i}", i + 1, f"k{i % 2}", "PaymentLinkCreated", f"p{i}".encode(), now) for i in range(count)]


class _Producer:
    def __init__(self) -> None:
        self.acked: set[bytes] = set()
        self.delivered: list[bytes] = []
        self.sent = asyncio.Condition()

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self.acked.add(value))
        future.set_result(None)
        self.delivered.append(value)
        async with self.sent:
            self.sent.notify_all()
        return future


class _Outbox:
    """Records entries marked before their acknowledgement; a marking completes only once an entry after
    its batch was sent."""

    def __init__(self, entries: list[OutboxEntry], producer: _Producer, fail_first_mark: bool = False) -> None:
        self.entries, self.producer = entries, producer
        self.published: list[str] = []
        self.marked_before_ack: list[str] = []
        self.fail_next_mark = fail_first_mark
        self.overlapped = 0  # markings during which the next batch went out

    async def unpublished(self, limit: int, after_seq: int | None = None) -> list[OutboxEntry]:
        above = -1 if after_seq is None else after_seq
        return [e for e in self.entries if e.event_id not in self.published and e.seq > above][:limit]

    async def mark_published(
        self, entries: list[OutboxEntry], positions: Mapping[str, tuple[int, int]] | None = None
    ) -> None:
        self.marked_before_ack += [e.event_id for e in entries if e.payload not in self.producer.acked]
        later = {e.payload for e in self.entries if e.seq > entries[-1].seq}
        if later:
            async with asyncio.timeout(5), self.producer.sent:  # a relay that does not pipeline never sends
                await self.producer.sent.wait_for(lambda: later.intersection(self.producer.delivered))
            self.overlapped += 1
        if self.fail_next_mark:
            self.fail_next_mark = False
            raise RetryableError("store_unavailable", "the store went away while marking")
        self.published += [e.event_id for e in entries]

    async def purge_published(self, older_than: timedelta) -> int:
        return 0


class _Lease:
    owner = "test"

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


async def _run_until_published(outbox: _Outbox, relay: Relay) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(10):
        while len(set(outbox.published)) < len(outbox.entries):
            await asyncio.sleep(0.01)
            assert not task.done()
    stop.set()
    await task


async def test_the_next_batch_goes_out_while_the_previous_one_is_marked_and_nothing_is_marked_unacked() -> None:
    producer = _Producer()
    outbox = _Outbox(_entries(7), producer)
    relay = Relay(outbox, _Lease(), producer, RelayOptions(topic="results", batch_size=2))  # type: ignore[arg-type]
    await _run_until_published(outbox, relay)
    assert outbox.marked_before_ack == []
    assert outbox.overlapped == 3, "each full batch's marking overlapped the next batch's send"
    assert producer.delivered == [e.payload for e in outbox.entries], "each once, in insertion order"
    assert outbox.published == [e.event_id for e in outbox.entries]


async def test_a_failed_marking_publishes_that_batch_again_before_what_followed() -> None:
    producer = _Producer()
    outbox = _Outbox(_entries(5), producer, fail_first_mark=True)
    options = RelayOptions(topic="results", batch_size=2, poll_interval_s=0.01)
    await _run_until_published(outbox, Relay(outbox, _Lease(), producer, options))  # type: ignore[arg-type]
    # e0, e1 sent; e2, e3 sent while marking e0, e1 failed; then from the oldest pending again.
    assert producer.delivered == [b"p0", b"p1", b"p2", b"p3", b"p0", b"p1", b"p2", b"p3", b"p4"]
    assert sorted(outbox.published) == [e.event_id for e in outbox.entries]


async def test_the_idle_poll_starts_short_after_a_batch_and_doubles_up_to_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = _Producer()
    outbox = _Outbox(_entries(1), producer)
    options = RelayOptions(topic="results", poll_interval_s=0.02, poll_min_interval_s=0.005)
    relay = Relay(outbox, _Lease(), producer, options)  # type: ignore[arg-type]
    waits: list[float] = []
    stop = asyncio.Event()

    async def recorded(_: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 5:
            stop.set()

    monkeypatch.setattr(relay_module, "_wait", recorded)
    async with asyncio.timeout(10):
        await relay.run(stop)
    assert waits == [0.005, 0.01, 0.02, 0.02, 0.02]
    assert outbox.published == ["e0"]
