"""``paylink results``: the events of the results topic, for people (a line each) or scripts (``--json``).

It reads through ``paylink.client.iter_results`` without a consumer group, so it commits no offsets and
never disturbs a real consumer. Without ``--follow`` it prints what the topic holds and exits; with it,
what arrives from now on (or from the beginning) until interrupted. ``reading <topic>`` on stderr marks
the moment from which new events are seen (scripts and tests wait for it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from consumer.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from consumer.runtime.settings import Settings
from paylink.client import RESULT_TYPES, ResultMessage, iter_results


def results(args: argparse.Namespace, settings: Settings) -> int:
    unknown = sorted(set(args.types) - RESULT_TYPES.keys())
    if unknown:
        known = ", ".join(RESULT_TYPES)
        print(f"paylink results: unknown --type {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(_read(args, settings))
    except KeyboardInterrupt:  # the way out of --follow
        pass
    except LookupError as missing:
        print(f"paylink results: {missing.args[0]} (`paylink topics create` creates it)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _read(args: argparse.Namespace, settings: Settings) -> None:
    topic = settings.results_topic

    def ready() -> None:
        print(f"reading {topic}", file=sys.stderr, flush=True)

    # Ctrl-C or SIGTERM ends --follow cleanly (exit 0), also where SIGINT is ignored (a script's
    # background job).
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    messages = iter_results(
        settings.kafka_bootstrap_servers,
        topic,
        from_beginning=args.from_beginning or not args.follow,
        follow=args.follow,
        on_ready=ready,
        stop=stop,
    )
    async for message in messages:
        if matches(message.document, args):
            print(render(message, as_json=args.json, headers=args.headers), flush=True)


def matches(event: dict[str, Any], args: argparse.Namespace) -> bool:
    """Every given filter holds for ``event``."""
    wanted = {
        "payment_link_id": args.payment_link_id,
        "correlation_id": args.correlation_id,
        "account_id": args.account,
    }
    if any(value is not None and event.get(name) != value for name, value in wanted.items()):
        return False
    return not args.types or event.get("event_type") in args.types


def render(message: ResultMessage, *, as_json: bool, headers: bool) -> str:
    """One event: its JSON (wrapped with key and headers if asked), or a readable line (and two more)."""
    event = message.document
    if as_json:
        if not headers:
            return json.dumps(event, ensure_ascii=False)
        envelope = {"key": message.key, "headers": message.headers, "partition": message.partition}
        return json.dumps({**envelope, "offset": message.offset, "event": event}, ensure_ascii=False)
    line = "  ".join(
        [
            str(event.get("occurred_at", "-")),
            f"{event.get('event_type', '?'):<26}",
            f"link={event.get('payment_link_id', '-')}",
            *([f"attempt={event['attempt']}"] if "attempt" in event else []),
            _summary(event),
        ]
    )
    if headers:
        shown = ", ".join(f"{name}={value}" for name, value in sorted(message.headers.items()))
        line += f"\n    key: {message.key}\n    headers: {shown}"
    return line


def _summary(event: dict[str, Any]) -> str:
    kind = event.get("event_type")
    if kind == "PaymentLinkCreated":
        return f"url={event.get('url')} amount_due={event.get('amount_due')} {event.get('currency')}"
    if kind in ("PaymentLinkFailed", "PaymentLinkCancelRejected"):
        return f"reason={event.get('reason')} retryable={str(event.get('retryable')).lower()}"
    return f"source={event.get('source', '-')} invoice={event.get('invoice_id', '-')}"
