"""``paylink show``: one request's whole story, gathered from the stores through the query ports.

The id may be a ``payment_link_id`` (a request's ``event_id``), a cancel request's id or a dead letter's
id (``topic:partition:offset``); each leads to its payment link when there is one. The story holds the
saga (request, status, bounded step history), the link's lifecycle record, its cancel requests, the
result events published or pending in the outbox (by the event ids the saga, the lifecycle and the
cancels recorded), and the dead letters of the request and its cancels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from consumer.ports import CancelArchive, DeadLetterArchive, EventLookup, SagaQueries
from domain.cancel_record import CancelRecord
from domain.lifecycle import LifecycleRecord
from domain.ports import LifecycleStore
from domain.saga_history import EntryKind
from domain.saga_record import SagaRecord
from domain.stored import DeadLetter, StoredEvent


@dataclass(frozen=True)
class ShowPorts:
    sagas: SagaQueries
    cancels: CancelArchive
    lifecycles: LifecycleStore
    outbox: EventLookup
    dead_letters: DeadLetterArchive


@dataclass
class Story:
    asked: str
    found_as: str  # payment_link, cancel or dead_letter
    payment_link_id: str | None = None
    saga: SagaRecord | None = None
    lifecycle: LifecycleRecord | None = None
    cancels: list[CancelRecord] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


async def find_story(ports: ShowPorts, asked: str) -> Story | None:
    """The story of ``asked``, or None when no saga, cancel or dead letter has that id."""
    story = await _anchor(ports, asked)
    if story is None:
        return None
    link = story.payment_link_id
    if link is not None:
        story.saga = story.saga or await ports.sagas.load(link)
        story.lifecycle = await ports.lifecycles.load(link)
        known = {cancel.cancel_request_id for cancel in story.cancels}
        story.cancels += [c for c in await ports.cancels.find_for_link(link) if c.cancel_request_id not in known]
    letters = {letter.id: letter for letter in story.dead_letters}
    for event_id in [link, *(cancel.cancel_request_id for cancel in story.cancels)]:
        if event_id is not None:
            letters.update((d.id, d) for d in await ports.dead_letters.find(event_id=event_id, limit=20))
    story.dead_letters = sorted(letters.values(), key=lambda letter: letter.first_failed_at)
    event_ids = result_event_ids(story)
    story.events = await ports.outbox.find_events(event_ids) if event_ids else []
    return story


async def _anchor(ports: ShowPorts, asked: str) -> Story | None:
    saga = await ports.sagas.load(asked)
    if saga is not None:
        return Story(asked, "payment_link", asked, saga=saga)
    cancel = await ports.cancels.load(asked)
    if cancel is not None:
        return Story(asked, "cancel", cancel.payment_link_id, cancels=[cancel])
    letter = await ports.dead_letters.get(asked)
    if letter is None:
        return None
    story = Story(asked, "dead_letter", dead_letters=[letter])
    if letter.event_id is not None:
        cancel = await ports.cancels.load(letter.event_id)
        story.cancels = [cancel] if cancel else []
        story.payment_link_id = cancel.payment_link_id if cancel else letter.event_id
    return story


def result_event_ids(story: Story) -> list[str]:
    """Every result event id the stores recorded for the story, oldest first, once each."""
    ids: list[str] = []
    if story.saga is not None:
        history = story.saga.history.entries
        ids += [e.ids["event_id"] for e in history if e.kind is EntryKind.RESULT and "event_id" in e.ids]
        if story.saga.result is not None:
            ids.append(story.saga.result.event_id)
    if story.lifecycle is not None:
        ids += [str(entry.event["event_id"]) for entry in story.lifecycle.history if "event_id" in entry.event]
    ids += [str(c.result["event_id"]) for c in story.cancels if c.result and "event_id" in c.result]
    return list(dict.fromkeys(ids))


def story_document(story: Story) -> dict[str, Any]:
    """The story as one JSON-ready document (``paylink show --json``)."""
    saga = story.saga.to_document() if story.saga else None
    return {
        "asked": story.asked,
        "found_as": story.found_as,
        "payment_link_id": story.payment_link_id,
        "saga": saga,
        "lifecycle": story.lifecycle.to_document() if story.lifecycle else None,
        "cancels": [cancel.to_document() for cancel in story.cancels],
        "events": [_event_document(event) for event in story.events],
        "dead_letters": [_letter_document(letter) for letter in story.dead_letters],
    }


def _event_document(event: StoredEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "state": "published" if event.published else "pending",
        "created_at": event.created_at.isoformat(),
        "published_at": event.published_at.isoformat() if event.published_at else None,
        "partition": event.partition,
        "offset": event.offset,
        "event": json.loads(event.payload),
    }


def _letter_document(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "reason": letter.reason,
        "message": letter.message,
        "event_id": letter.event_id,
        "first_failed_at": letter.first_failed_at.isoformat(),
        "attempts": letter.attempts,
        "bytes": len(letter.raw),
        "retried_as": letter.retried_as,
    }
