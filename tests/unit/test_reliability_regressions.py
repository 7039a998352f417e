"""Regressions for bugs the reliability suite (``make reliability``) found; each names its scenario."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    OutOfOrderSequenceNumber,
    UnknownTopicOrPartitionError,
)

from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from consumer.ports import Unreachable
from consumer.runtime.relay import Relay, RelayOptions
from consumer.runtime.startup import StartWait, started
from domain.errors import PermanentError
from domain.intake import failure_for_unparseable, parse_request, recover_identity
from domain.stored import OutboxEntry
from tests.fakes.world import REQUEST_ID, request_document

NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)


# hostile_input: a bad message whose ids hold lone surrogates ("\ud800" escapes, which json.loads accepts)
# produced a PaymentLinkFailed that could not be serialised; the handler raised, and the message's
# partition never committed again.


@pytest.mark.parametrize("field", ["event_id", "account_id", "contact_id", "correlation_id"])
def test_lone_surrogates_are_not_recovered_as_ids(field: str) -> None:
    document = {**request_document(), "line_items": "bad", field: "x\ud800y"}
    raw = json.dumps(document).encode()  # json.dumps escapes the surrogate as \ud800
    assert b"\\ud800" in raw
    identity = recover_identity(raw)
    if field == "event_id":
        assert identity is None
        return
    assert identity is not None and identity.event_id == REQUEST_ID
    assert getattr(identity, field) is None
    with pytest.raises(PermanentError) as caught:
        parse_request(raw)
    failed = failure_for_unparseable(raw, caught.value, NOW)
    assert failed is not None
    json.loads(failed.model_dump_json())  # serialisable: the outbox can store it


class _Letters:
    def __init__(self) -> None:
        self.recorded: list[dict[str, Any]] = []

    async def record(self, **fields: Any) -> str:
        self.recorded.append(fields)
        return f"{fields['topic']}:{fields['partition']}:{fields['offset']}"


class _BrokenSaga:
    """A saga whose result for an unparseable message cannot be recorded (an unexpected error)."""

    async def reject_unparseable(self, raw: bytes, error: PermanentError) -> None:
        raise TypeError("cannot serialise this result")


async def test_an_unexpected_error_dead_letters_the_message_instead_of_stalling_its_partition() -> None:
    letters = _Letters()
    handler = RequestHandler(_BrokenSaga(), letters, RetryPolicy(attempts=1, initial_s=0.01, max_s=0.01))  # type: ignore[arg-type]
    record = SimpleNamespace(topic="requests", partition=0, offset=7, key=None, value=b'{"oops": 1}')
    job = handler.prepare(record)
    await handler.handle(job)  # returns: the message's outcome is durable, its offset may be committed
    assert [letter["reason"] for letter in letters.recorded] == ["invalid_event", "internal_error"]
    assert letters.recorded[-1]["raw"] == b'{"oops": 1}'
    assert "TypeError" in letters.recorded[-1]["message"]


# chaos_monkey: a relay restarted while the broker was restarting exited at once ("a dependency is
# unreachable", exit 3), again on every restart until the broker was back; under Kubernetes the crash
# loop's back-off would keep results unpublished long after the broker returned.


class _Client:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.stopped = False

    async def start(self) -> None:
        if self.fails:
            raise KafkaConnectionError("Unable to bootstrap from [('localhost', 1)]")

    async def stop(self) -> None:
        self.stopped = True


async def test_a_process_starting_while_kafka_is_down_waits_for_it() -> None:
    made: list[_Client] = []

    def make() -> _Client:
        made.append(_Client(fails=len(made) < 2))
        return made[-1]

    client = await started(make, StartWait(60, 5, asyncio.Event()), "Kafka")
    assert client is made[-1] and len(made) == 3
    assert [c.stopped for c in made] == [True, True, False]  # half-started clients are closed


async def test_it_gives_up_after_the_start_wait_naming_the_setting(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"), pytest.raises(Unreachable, match=r"Kafka did not answer.*PAYLINK_START_WAIT_S"):
        await started(lambda: _Client(fails=True), StartWait(0.5, 0.2, asyncio.Event()), "Kafka")
    waiting = [r for r in caplog.records if r.getMessage() == "waiting for Kafka"]
    assert len(waiting) >= 2, "a line every log interval while waiting"


async def test_a_stop_signal_ends_the_wait() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await started(lambda: _Client(fails=True), StartWait(60, 5, stop), "Kafka") is None


# kafka_outage: with the broker down longer than the producer's timeouts, a send failed
# (UnknownTopicOrPartitionError, LeaderNotAvailableError) and the exception ended the relay process.


class _Outbox:
    def __init__(self, entries: list[OutboxEntry]) -> None:
        self.entries = {entry.event_id: entry for entry in entries}
        self.published: list[str] = []

    async def unpublished(self, limit: int, after_seq: int | None = None) -> list[OutboxEntry]:
        above = -1 if after_seq is None else after_seq
        return [e for e in self.entries.values() if e.event_id not in self.published and e.seq > above][:limit]

    async def mark_published(self, entries: list[OutboxEntry], positions: object = None) -> None:
        self.published += [entry.event_id for entry in entries]

    async def purge_published(self, older_than: timedelta) -> int:
        return 0


class _Lease:
    owner = "test"

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class _FlakyProducer:
    """Fails the second send of the first batch (after the first was sent), then works."""

    def __init__(self) -> None:
        self.sends = 0
        self.delivered: list[bytes] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sends += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.sends == 2:
            raise UnknownTopicOrPartitionError()
        if self.sends == 3:
            future.set_exception(LeaderNotAvailableError())
        else:
            self.delivered.append(value)
            future.set_result(None)
        return future


async def test_the_relay_rides_out_kafka_errors_and_publishes_the_batch_again() -> None:
    entries = [
        OutboxEntry(f"e{i}", i, "contact", "PaymentLinkFailed", f"p{i}".encode(), datetime.now(UTC)) for i in range(2)
    ]
    outbox, producer = _Outbox(entries), _FlakyProducer()
    relay = Relay(outbox, _Lease(), producer, RelayOptions(topic="results", poll_interval_s=0.01))  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(10):
        while outbox.published != ["e0", "e1"]:
            await asyncio.sleep(0.05)
            assert not task.done(), "the relay must not stop on a Kafka error"
    stop.set()
    await task
    assert producer.delivered[-2:] == [b"p0", b"p1"]  # the whole batch again, in order


# chaos_monkey (1 run in 4): after a Kafka restart the broker answered every send of the active relay's
# idempotent producer with OutOfOrderSequenceNumber for 6 minutes; the relay retried with the same producer
# and kept its lease, so nothing was published and no standby took over.


class _ForgottenProducer:
    """A producer whose sequence the broker lost: every send fails, forever."""

    def __init__(self) -> None:
        self.stopped = False

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(OutOfOrderSequenceNumber())
        return future

    async def stop(self) -> None:
        self.stopped = True


async def test_the_relay_replaces_a_producer_whose_sequence_the_broker_lost() -> None:
    entries = [OutboxEntry("e0", 0, "contact", "PaymentLinkFailed", b"p0", datetime.now(UTC))]
    outbox, broken, fresh = _Outbox(entries), _ForgottenProducer(), _FlakyProducer()
    fresh.sends = 10  # past its own scripted failures: it delivers

    async def renew(old: Any) -> Any:
        await old.stop()
        return fresh

    relay = Relay(outbox, _Lease(), broken, RelayOptions(topic="results", poll_interval_s=0.01), renew)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(10):
        while outbox.published != ["e0"]:
            await asyncio.sleep(0.05)
            assert not task.done()
    stop.set()
    await task
    assert broken.stopped and relay.producer is cast(Any, fresh) and fresh.delivered == [b"p0"]


# ferretdb_outage: PyMongo's async server selection raised "RuntimeError: cannot wait on un-acquired lock"
# during the outage; the exception ended the relay process.


class _LeaseThatBreaksOnce(_Lease):
    def __init__(self) -> None:
        self.calls = 0

    async def acquire(self) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("cannot wait on un-acquired lock")
        return True


async def test_the_relay_survives_an_unexpected_error_and_publishes_on() -> None:
    entries = [OutboxEntry("e0", 0, "contact", "PaymentLinkFailed", b"p0", datetime.now(UTC))]
    outbox, producer, lease = _Outbox(entries), _FlakyProducer(), _LeaseThatBreaksOnce()
    producer.sends = 10  # past its scripted failures
    relay = Relay(outbox, lease, producer, RelayOptions(topic="results", poll_interval_s=0.01))  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(10):
        while outbox.published != ["e0"]:
            await asyncio.sleep(0.05)
            assert not task.done(), "an unexpected error must not end the relay"
    stop.set()
    await task
    assert lease.calls >= 2


# mongo_partition_relay: the active relay's outbox read stalled (its MongoDB cut off) for longer than the
# lease; the standby took over, and when the read came back the old relay sent the batch it had read,
# while the standby was publishing too. A batch read past the lease's safe part is not sent.


class _StalledOutbox(_Outbox):
    def __init__(self, entries: list[OutboxEntry], stall_s: float) -> None:
        super().__init__(entries)
        self.stall_s = stall_s

    async def unpublished(self, limit: int, after_seq: int | None = None) -> list[OutboxEntry]:
        await asyncio.sleep(self.stall_s)  # the store answers only after the partition heals
        return await super().unpublished(limit, after_seq)


class _LeaseLostAfterFirst(_Lease):
    def __init__(self) -> None:
        self.calls = 0
        self.lost = asyncio.Event()

    async def acquire(self) -> bool:
        self.calls += 1
        if self.calls > 1:  # the standby holds it from the second look on
            self.lost.set()
        return self.calls == 1


async def test_a_batch_read_after_the_lease_could_have_passed_is_not_sent() -> None:
    entries = [OutboxEntry("e0", 0, "contact", "PaymentLinkFailed", b"p0", datetime.now(UTC))]
    outbox, producer, lease = _StalledOutbox(entries, stall_s=0.4), _FlakyProducer(), _LeaseLostAfterFirst()
    producer.sends = 10
    options = RelayOptions(topic="results", poll_interval_s=0.01, lease_length_s=0.3)
    relay = Relay(outbox, lease, producer, options)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    async with asyncio.timeout(10):
        await lease.lost.wait()
    stop.set()
    await task
    assert relay.stats.fenced == 1
    assert producer.delivered == [], "the old holder sent a batch while the standby held the lease"
    assert not relay.stats.active
