"""``paylink show ID [--json]``: one request's story (``consumer.app.show``) as tables, or one JSON document.

Exit codes: 0 shown, 1 no saga, cancel or dead letter has that id, 3 MongoDB unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from collections.abc import Sequence

from consumer.app.show import ShowPorts, Story, find_story, story_document
from consumer.cli.output import EXIT_FAILED, EXIT_OK, iso, print_table
from consumer.runtime.bootstrap import open_stores
from consumer.runtime.settings import Settings
from domain.saga_history import HistoryEntry
from domain.saga_record import SagaRecord

MESSAGE_CHARS = 80


async def load_story(settings: Settings, asked: str) -> Story | None:
    async with open_stores(settings) as stores:
        ports = ShowPorts(stores.sagas, stores.cancels, stores.lifecycles, stores.outbox, stores.dead_letters)
        return await find_story(ports, asked)


def show(args: argparse.Namespace, settings: Settings) -> int:
    story = asyncio.run(load_story(settings, args.id))
    if story is None:
        print(f"paylink show: no payment link, cancel or dead letter {args.id!r}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(story_document(story), indent=2))
    else:
        print(render_story(story), end="")
    return EXIT_OK


def render_story(story: Story) -> str:
    """The human form: one block per part of the story, tables where there are rows."""
    out = io.StringIO()
    via = "" if story.found_as == "payment_link" else f" (found from {story.found_as.replace('_', ' ')} {story.asked})"
    print(f"PAYMENT LINK {story.payment_link_id or '-'}{via}", file=out)
    if story.saga is None:
        print("  no saga stored for it", file=out)
    else:
        _saga(story.saga, out)
    print("RESULTS", file=out)
    _table(
        ["  EVENT_ID", "TYPE", "STATE", "PARTITION", "OFFSET", "APPENDED", "PUBLISHED"],
        [
            [
                f"  {e.event_id}",
                e.event_type,
                "published" if e.published else "pending",
                e.partition,
                e.offset,
                iso(e.created_at),
                iso(e.published_at) if e.published_at else None,
            ]
            for e in story.events
        ],
        out,
    )
    if story.lifecycle is not None:
        lifecycle = story.lifecycle
        print(f"LIFECYCLE {lifecycle.status}{' (overdue)' if lifecycle.overdue else ''}", file=out)
        _table(
            ["  AT", "TRANSITION", "SOURCE", "STRIPE_EVENT"],
            [[f"  {iso(h.at)}", h.transition, h.source, h.stripe_event_id] for h in lifecycle.history],
            out,
        )
    print("CANCELS", file=out)
    _table(
        ["  CANCEL_ID", "STATUS", "ATTEMPT", "RESULT", "UPDATED"],
        [
            [f"  {c.cancel_request_id}", c.status, c.attempt, (c.result or {}).get("event_type"), iso(c.updated_at)]
            for c in story.cancels
        ],
        out,
    )
    print("DEAD LETTERS", file=out)
    _table(
        ["  ID", "FIRST_FAILED_AT", "REASON", "RETRIED_AS", "MESSAGE"],
        [[f"  {d.id}", iso(d.first_failed_at), d.reason, d.retried_as, _short(d.message)] for d in story.dead_letters],
        out,
    )
    return out.getvalue()


def _saga(saga: SagaRecord, out: io.StringIO) -> None:
    request = saga.request
    print(
        f"  status {saga.status}, attempt {saga.attempt}, restarts {saga.restarts}; account {saga.account_id}, "
        f"contact {saga.contact_id}; correlation_id {request.get('correlation_id') or '-'}",
        file=out,
    )
    print(
        f"  request: {request.get('currency')} {len(request.get('line_items', []))} line(s); "
        f"created {iso(saga.created_at)}, updated {iso(saga.updated_at)}",
        file=out,
    )
    print(
        f"  stripe: account {saga.stripe_account or '-'}, customer {saga.customer_id or '-'}, "
        f"invoice {saga.invoice_id or '-'}; short_url {saga.short_url or '-'}",
        file=out,
    )
    if saga.failure is not None:
        failure = saga.failure
        print(
            f"  failure: {failure.reason} at {failure.failed_step} (retryable {str(failure.retryable).lower()}, "
            f"compensated {str(failure.compensated).lower()}): {failure.message}",
            file=out,
        )
    dropped = saga.history.dropped
    print(f"STEPS{f' ({dropped} older entries dropped)' if dropped else ''}", file=out)
    _table(
        ["  ATTEMPT", "STEP", "OUTCOME", "STARTED", "MS", "IDS", "REASON", "RETRYABLE", "MESSAGE"],
        [_step_row(entry) for entry in saga.history.entries],
        out,
    )


def _step_row(entry: HistoryEntry) -> list[object]:
    millis = round((entry.ended_at - entry.started_at).total_seconds() * 1000)
    ids = " ".join(f"{name}={value}" for name, value in entry.ids.items())
    retryable = None if entry.retryable is None else str(entry.retryable).lower()
    message = _short(entry.message) if entry.message else None
    return [
        f"  {entry.attempt}",
        entry.step,
        entry.kind,
        iso(entry.started_at),
        millis,
        ids,
        entry.reason,
        retryable,
        message,
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: io.StringIO) -> None:
    if rows:
        print_table(headers, rows, out)
    else:
        print("  none", file=out)


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"
