"""Repairing a dead letter: validate (the original bytes, or an operator's edit), re-publish to the topic it
came from with its original Kafka key and headers, and mark the letter retried with the new event's id.

- Validation is the worker's own intake (``domain.intake.parse_message``): an edit the worker would
  dead-letter again is refused, and nothing is sent.
- Headers are kept except the stale ones (``STALE_HEADERS``: the old trace context and CloudEvents
  per-message attributes would describe the failed delivery, not the retry); ``paylink-retried-from``
  names the dead letter.
- Idempotent: a letter already marked retried is not re-published; the outcome says so, with the event
  id it was retried as. A crash between the send and the mark can re-send once on the next retry: the
  worker's sagas are idempotent on ``event_id``, so the duplicate changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from consumer.ports import DeadLetterArchive
from domain.errors import PermanentError
from domain.intake import parse_message
from domain.stored import DeadLetter

STALE_HEADERS = frozenset({"traceparent", "tracestate", "ce_id", "ce_time", "paylink-retried-from"})
RETRIED_FROM = "paylink-retried-from"

Send = Callable[[str, bytes, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]


class Verdict(StrEnum):
    NOT_FOUND = "not_found"
    ALREADY_RETRIED = "already_retried"
    INVALID = "invalid"
    WOULD_SEND = "would_send"
    SENT = "sent"


@dataclass(frozen=True)
class Retry:
    verdict: Verdict
    letter: DeadLetter | None = None
    event_id: str | None = None
    value: bytes = b""
    headers: tuple[tuple[str, bytes], ...] = ()
    problem: str | None = None


def retry_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The letter's headers minus the stale ones, plus the one naming the letter."""
    kept = [(name, value) for name, value in letter.headers if name.lower() not in STALE_HEADERS]
    return [*kept, (RETRIED_FROM, letter.id.encode())]


async def retry_dead_letter(
    archive: DeadLetterArchive,
    letter_id: str,
    send: Send,
    now: datetime,
    *,
    edited: bytes | None = None,
    dry_run: bool = False,
) -> Retry:
    letter = await archive.get(letter_id)
    if letter is None:
        return Retry(Verdict.NOT_FOUND)
    if letter.retried_as is not None:
        return Retry(Verdict.ALREADY_RETRIED, letter, letter.retried_as)
    value = edited if edited is not None else letter.raw
    try:
        event = parse_message(value)
    except PermanentError as error:
        return Retry(Verdict.INVALID, letter, value=value, problem=f"{error.reason}: {error.message}")
    headers = retry_headers(letter)
    if dry_run:
        return Retry(Verdict.WOULD_SEND, letter, event.event_id, value, tuple(headers))
    await send(letter.topic, value, letter.key, headers)
    if not await archive.mark_retried(letter.id, event.event_id, now):
        stored = await archive.get(letter.id)  # another retry marked it in between
        return Retry(Verdict.ALREADY_RETRIED, letter, stored.retried_as if stored else event.event_id)
    return Retry(Verdict.SENT, letter, event.event_id, value, tuple(headers))


def printable_headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    return {name: value.decode("utf-8", "backslashreplace") for name, value in headers}
