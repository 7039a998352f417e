"""paylink's supported Python client for integrators: send requests, read results.

    from paylink.client import new_request, send_request, iter_results

    request = new_request(account_id="acc-1042", contact_id="con-7", currency="eur", days_until_due=14,
                          line_items=[{"description": "Consulting", "amount": 12000}])
    await send_request("localhost:9092", "payment-links.requested", request)
    async for message in iter_results("localhost:9092", "payment-links.results", group_id="crm-results"):
        ...  # message.event is a typed model; dedupe on message.event.event_id

- ``send_request`` runs every check the worker runs before it calls Stripe (``domain.intake.
  validate_request``, clock rules included), so a request it accepts fails later only for reasons that
  depend on the CRM or Stripe; it keys the message by ``contact_id`` and sets ``traceparent`` when given.
- ``iter_results`` yields every event of the results topic as a typed model (results, lifecycle events,
  cancel rejections; ``UnknownEvent`` for a type this version does not know). With ``group_id`` it
  commits a message's offset only once the caller asks for the next one (at least once); without, it is
  an ephemeral reader that commits nothing.

Delivery is at least once: dedupe on ``event_id``; for one ``payment_link_id`` the result with the
highest ``attempt`` wins (a ``PaymentLinkFailed`` with ``retryable=true`` is not final).
It depends on ``domain`` (the models), ``adapters.system`` (the clock) and aiokafka, never on the
service's runtime (``tests/unit/test_layering.py``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel, ConfigDict

from adapters.system import SystemClock
from domain.cancel_events import PaymentLinkCancelRejected
from domain.errors import PermanentError
from domain.events import PaymentLinkCreated, PaymentLinkFailed, PaymentLinkRequested
from domain.intake import validate_request
from domain.lifecycle_events import (
    LIFECYCLE_EVENT_TYPES,
    PaymentLinkOverdue,
    PaymentLinkPaid,
    PaymentLinkPaymentFailed,
    PaymentLinkUncollectible,
    PaymentLinkVoided,
)

__all__ = [  # the event models are re-exported: integrators import everything from here
    "RESULT_TYPES",
    "Event",
    "PaymentLinkCancelRejected",
    "PaymentLinkCreated",
    "PaymentLinkFailed",
    "PaymentLinkOverdue",
    "PaymentLinkPaid",
    "PaymentLinkPaymentFailed",
    "PaymentLinkRequested",
    "PaymentLinkUncollectible",
    "PaymentLinkVoided",
    "PermanentError",
    "ResultMessage",
    "UnknownEvent",
    "iter_results",
    "new_request",
    "parse_event",
    "send_request",
]


_CLOCK = SystemClock()  # the service's one clock, for the due-date rule and occurred_at


class UnknownEvent(BaseModel):
    """An event type this client does not know yet (the contract only ever adds types): skip it."""

    model_config = ConfigDict(frozen=True, extra="allow")
    event_id: str
    event_type: str


Event = (
    PaymentLinkCreated
    | PaymentLinkFailed
    | PaymentLinkPaid
    | PaymentLinkPaymentFailed
    | PaymentLinkOverdue
    | PaymentLinkUncollectible
    | PaymentLinkVoided
    | PaymentLinkCancelRejected
    | UnknownEvent
)
RESULT_TYPES: dict[str, type[BaseModel]] = {
    kind.__name__: kind
    for kind in (PaymentLinkCreated, PaymentLinkFailed, *LIFECYCLE_EVENT_TYPES, PaymentLinkCancelRejected)
}


def parse_event(value: bytes) -> Event:
    """The typed event of one message value of the results topic (parsed tolerantly: fields may be added)."""
    document = json.loads(value)
    model = RESULT_TYPES.get(str(document.get("event_type")), UnknownEvent)
    return cast(Event, model.model_validate(document))


@dataclass(frozen=True)
class ResultMessage:
    """One message of the results topic: its typed event, and where and how it was sent."""

    event: Event
    document: dict[str, Any]
    key: str | None
    headers: dict[str, str] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0


def new_request(
    *,
    account_id: str,
    contact_id: str,
    currency: str,
    line_items: Sequence[Mapping[str, Any]],
    days_until_due: int | None = None,
    due_date: date | None = None,
    event_id: str | None = None,
    **optional: Any,
) -> dict[str, Any]:
    """A ``PaymentLinkRequested`` body with a new ``event_id`` (keep it: re-send with the same one)."""
    body: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": _CLOCK.now().isoformat(),
        "account_id": account_id,
        "contact_id": contact_id,
        "currency": currency,
        "line_items": [dict(item) for item in line_items],
    }
    if days_until_due is not None:
        body["days_until_due"] = days_until_due
    if due_date is not None:
        body["due_date"] = due_date.isoformat()
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


async def send_request(
    bootstrap_servers: str,
    topic: str,
    request: Mapping[str, Any],
    *,
    traceparent: str | None = None,
    producer: AIOKafkaProducer | None = None,
) -> PaymentLinkRequested:
    """Validates ``request`` like the worker does, then sends it keyed by ``contact_id``.

    Raises ``domain.errors.PermanentError`` (with the worker's ``reason``) and sends nothing when a check
    fails. Pass a started ``producer`` to reuse one for many requests.
    """
    checked = validate_request(json.dumps(dict(request)).encode(), _CLOCK.now())
    headers = [("traceparent", traceparent.encode())] if traceparent else []
    own = producer is None
    sender = producer or AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all")
    if own:
        await sender.start()
    try:
        value = checked.model_dump_json(exclude_none=True).encode()
        await sender.send_and_wait(topic, value, key=checked.contact_id.encode(), headers=headers)
    finally:
        if own:
            await sender.stop()
    return checked


async def iter_results(
    bootstrap_servers: str,
    topic: str,
    *,
    group_id: str | None = None,
    from_beginning: bool = False,
    follow: bool = True,
    on_ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[ResultMessage]:
    """Every message of the results topic, in order per partition (so per contact).

    ``from_beginning``: start at the oldest retained event (for a group: only when it has no committed
    offset yet); else at the newest. Without ``group_id`` the reader is ephemeral (no group, nothing
    committed), ``on_ready`` is called once its starting positions are fixed (what is published after
    that is seen), and ``follow=False`` stops at the end the topic had at that moment. A group always
    follows. Setting ``stop`` ends the iteration within half a second, after committing what was handled
    (a clean way out of a signal handler, instead of cancelling the task mid-commit).
    """
    if group_id is not None and not follow:
        raise ValueError("a consumer group follows the topic; read without group_id to stop at its end")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        ends = await _start_reading(consumer, bootstrap_servers, topic, group_id, from_beginning)
        if on_ready is not None:
            on_ready()
        pending: dict[TopicPartition, int] = {}
        while True:
            if pending and group_id is not None:
                await consumer.commit(pending)  # the caller has handled these: at least once
                pending = {}
            if stop is not None and stop.is_set():
                return
            if not follow and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                return
            batch = await consumer.getmany(timeout_ms=500)
            for partition, records in batch.items():
                for record in records:
                    yield _message(record)
                    pending[partition] = record.offset + 1
    finally:
        await consumer.stop()


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """The topic's partition numbers. (A consumer's own metadata names a topic's partitions only once it
    is subscribed to it; an admin client asks the cluster directly.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(int(p["partition"]) for d in described if d["topic"] == topic for p in d["partitions"])
    if not numbers:
        raise LookupError(f"no topic {topic!r} on the cluster")
    return numbers


async def _start_reading(
    consumer: AIOKafkaConsumer, bootstrap_servers: str, topic: str, group_id: str | None, from_beginning: bool
) -> dict[TopicPartition, int]:
    """Subscribes (group) or assigns every partition at its start or end (ephemeral); the end offsets."""
    if group_id is not None:
        consumer.subscribe([topic])
        return {}
    partitions = [TopicPartition(topic, number) for number in await _partitions(bootstrap_servers, topic)]
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    return ends


def _message(record: Any) -> ResultMessage:
    headers = {name: bytes(value).decode("utf-8", "replace") for name, value in (record.headers or ())}
    key = bytes(record.key).decode("utf-8", "replace") if record.key is not None else None
    return ResultMessage(
        event=parse_event(record.value),
        document=json.loads(record.value),
        key=key,
        headers=headers,
        partition=record.partition,
        offset=record.offset,
    )
