"""The reading commands' surface, ``paylink results`` and ``paylink show`` (split from ``consumer.cli.parser``
to keep it short; the same ``command`` helper declares them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

AddCommand = Callable[..., argparse.ArgumentParser]  # consumer.cli.parser's command(name, run, summary, description)


def add_results(command: AddCommand) -> None:
    reading = command(
        "results",
        "results:results",
        "print the events of the results topic (results, lifecycle events, cancel rejections)",
        "Reads the results topic with its own ephemeral reader (no consumer group, nothing committed): every\n"
        "retained event and exit, or with --follow only new ones until Ctrl-C (add --from-beginning for both).\n"
        "Filters combine (all must match); --type is repeatable. Delivery is at least once: the same event_id\n"
        "may show twice; for one payment_link_id the result with the highest attempt wins.",
    )
    reading.add_argument("--follow", action="store_true", help="keep reading new events until interrupted")
    reading.add_argument("--from-beginning", action="store_true", help="with --follow: start at the oldest event")
    reading.add_argument("--payment-link-id", metavar="ID", help="only this link (the request's event_id)")
    reading.add_argument("--correlation-id", metavar="ID", help="only this correlation_id")
    reading.add_argument("--account", metavar="ACCOUNT_ID", help="only this CRM account")
    reading.add_argument("--type", dest="types", action="append", default=[], metavar="EVENT_TYPE", help="repeatable")
    reading.add_argument("--json", action="store_true", help="one JSON event per line")
    reading.add_argument("--headers", action="store_true", help="show each message's key and headers too")


def add_show(command: AddCommand) -> None:
    showing = command(
        "show",
        "show:show",
        "one request's story: saga steps, retries, compensation, results, lifecycle, cancels, dead letters",
        "Shows everything paylink stored about one payment link: the request, each saga step (start, duration,\n"
        "attempt, the Stripe ids it produced), every failure and retry with its reason, the compensation, the\n"
        "result events (published with their Kafka partition/offset, or pending), lifecycle events, cancel\n"
        "requests and dead letters. ID is a payment_link_id, a cancel request id or a dead letter id.\n"
        "Exit 1 when nothing has that id.",
    )
    showing.add_argument("id", metavar="ID", help="payment_link_id, cancel request id or dead letter id")
    showing.add_argument("--json", action="store_true", help="one JSON document instead of tables")
