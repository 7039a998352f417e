"""The ``paylink`` command line surface: every command, flag and argument type (``paylink COMMAND --help``).

Each command's work lives in its own module of ``consumer.cli`` (``topics``, ``publish``, ``replay``,
``dead_letters``, ``status``, ``schema``, ``results``); ``consumer.cli.main`` runs the one chosen here and maps
failures to the exit codes listed in ``EXIT_CODES``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta

from consumer.app.replay import STALE_AFTER_S
from consumer.cli.parser_reading import add_results, add_show
from consumer.cli.values import amount_item, duration, metadata_pair, moment, price_item, seconds
from consumer.runtime.settings import Settings
from domain.errors import Reason

Command = Callable[[argparse.Namespace, Settings], int]
# Commands are named "module:function" (a module of consumer.cli) and imported only when chosen:
# importing every command's dependencies (Stripe, aiohttp, aiokafka, pymongo) made `paylink --help`
# take 1.5 s instead of 0.6 s (measured with `python -X importtime`).
CommandRef = str

EXIT_CODES = """\
exit codes:
  0  success
  1  the command ran but something failed (a replay that failed again, a dead letter not found, ...)
  2  bad usage or invalid input (unknown flag, an event that does not validate)
  3  a dependency (Kafka, MongoDB) could not be reached

Settings come from PAYLINK_* environment variables (or a .env file); `paylink schema --settings`
lists them all and docs/operations.md explains them."""

REASONS = [reason.value for reason in Reason]


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", choices=REASONS, metavar="REASON", help=f"only this reason: {', '.join(REASONS)}")
    parser.add_argument("--account", metavar="ACCOUNT_ID", help="only this CRM account")
    parser.add_argument("--since", type=moment, metavar="WHEN", help="from WHEN: ISO date/time, or 2h (= 2 hours ago)")
    parser.add_argument("--until", type=moment, metavar="WHEN", help="before WHEN (same forms)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paylink",
        description="Turns PaymentLinkRequested events into Stripe-hosted invoices with short URLs.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: CommandRef | None, summary: str, description: str = "") -> argparse.ArgumentParser:
        child = sub.add_parser(
            name,
            help=summary,
            description=description or summary,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if run is not None:
            child.set_defaults(run=run)
        return child

    for name, run, summary in (
        ("worker", "processes:worker", "consume requests and cancels, run them (SIGTERM drains in-flight work)"),
        ("relay", "processes:relay", "publish outbox entries to the results topic (one active relay, by lease)"),
    ):
        process = command(name, run, summary)
        process.add_argument("--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on this port")

    hooks = command(
        "webhooks",
        "processes:webhooks",
        "receive Stripe Connect webhooks: lifecycle events of the links (SIGTERM drains)",
        "Serves POST /stripe/webhooks (and /healthz, /readyz, /metrics) on PAYLINK_WEBHOOKS_HOST and\n"
        "PAYLINK_WEBHOOKS_PORT. Deliveries must be signed with one of PAYLINK_STRIPE_WEBHOOK_SECRETS (register the\n"
        "endpoint in Stripe with connect=true and the invoice.* events); each paid, failed, uncollectible or voided\n"
        "invoice of a link becomes a lifecycle event on the results topic.",
    )
    hooks.add_argument("--port", type=int, help="listen on this port instead of PAYLINK_WEBHOOKS_PORT")

    topics_group = command("topics", None, "manage the Kafka topics")
    topics_sub = topics_group.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    topics_sub.add_parser(
        "create",
        help="create the requests and results topics (idempotent)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(run="topics:topics_create")

    publishing = command(
        "publish",
        "publish:publish",
        "send a PaymentLinkRequested (validated first); prints its event_id",
        "Sends one PaymentLinkRequested, from a JSON file or from flags, after validating it like the worker "
        "does.\nWith flags, a new event_id is generated unless --event-id names one (re-sending the same "
        "event_id is idempotent).\nPrints the event_id on stdout.",
    )
    publishing.add_argument("--file", metavar="PATH", help="JSON file holding the event ('-' = stdin)")
    publishing.add_argument("--account", help="account_id (CRM tenant)")
    publishing.add_argument("--contact", help="contact_id")
    publishing.add_argument("--currency", help="ISO 4217 code, e.g. eur")
    due = publishing.add_mutually_exclusive_group()
    due.add_argument("--days-until-due", type=int, metavar="DAYS", help="1..365")
    due.add_argument("--due-date", metavar="YYYY-MM-DD", help="a date after today")
    publishing.add_argument(
        "--item",
        dest="items",
        type=price_item,
        action="append",
        default=[],
        metavar="PRICE_ID[:QTY]",
        help="a line priced by a Stripe price (repeatable)",
    )
    publishing.add_argument(
        "--amount-item",
        dest="amount_items",
        type=amount_item,
        action="append",
        default=[],
        metavar="DESCRIPTION:AMOUNT[:QTY]",
        help="a free-form line, amount in minor units (repeatable)",
    )
    publishing.add_argument("--description", help="invoice memo")
    publishing.add_argument("--correlation-id", help="copied to the result")
    publishing.add_argument("--note-id", help="the CRM note the link belongs to")
    publishing.add_argument(
        "--metadata",
        type=metadata_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="invoice metadata (repeatable)",
    )
    publishing.add_argument("--event-id", help="reuse this event_id instead of a new one")
    publishing.add_argument("--dry-run", action="store_true", help="validate and print the event; send nothing")

    cancelling = command(
        "cancel",
        "cancel:cancel",
        "send a PaymentLinkCancelRequested (validated first); prints its event_id",
        "Asks the worker to withdraw a payment link: its invoice is voided once, and PaymentLinkVoided (or\n"
        "PaymentLinkCancelRejected) follows on the results topic. The cancel is keyed by the link's contact,\n"
        "looked up from the link's saga unless --contact is given. Prints the cancel's event_id on stdout.",
    )
    cancelling.add_argument("--payment-link-id", required=True, metavar="ID", help="the link's payment_link_id")
    cancelling.add_argument("--account", required=True, metavar="ACCOUNT_ID", help="the link's CRM account")
    cancelling.add_argument("--contact", metavar="CONTACT_ID", help="the link's contact (default: from its saga)")
    cancelling.add_argument("--reason", metavar="TEXT", help="why (at most 500 characters)")
    cancelling.add_argument("--correlation-id", help="copied to the result")
    cancelling.add_argument("--dry-run", action="store_true", help="validate and print the event; send nothing")

    add_results(command)

    replaying = command(
        "replay",
        "replay:replay",
        "re-run failed requests, resuming their sagas",
        "Re-runs failed sagas here, with the worker's retry policy, each from its recorded state; the new "
        "result is\nappended to the outbox and published by the relay. Choose them by --event-id, by filters, "
        "or --all.\nSagas that are unknown, running or already created are skipped; a running one named by "
        "--event-id that\nwas not saved for --stale-after seconds is abandoned (e.g. a killed replay) and "
        "resumes. A progress bar\nshows on a terminal; one line per saga and a summary go to stdout. Exit 1 if "
        "any ended failed again,\nwas not found or could not be re-run.",
    )
    replaying.add_argument(
        "--event-id",
        action="append",
        default=[],
        metavar="ID",
        help="a request's or a cancel's event_id (repeatable)",
    )
    _filters(replaying)
    replaying.add_argument("--all", action="store_true", help="every replayable saga (up to --limit)")
    replaying.add_argument("--limit", type=int, default=1000, help="at most this many sagas (default 1000)")
    replaying.add_argument("--concurrency", type=int, default=4, help="sagas re-run at once (default 4)")
    replaying.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    replaying.add_argument(
        "--stale-after",
        type=seconds,
        default=STALE_AFTER_S,
        metavar="SECONDS",
        help="a running saga named by --event-id and not saved for SECONDS is abandoned and resumed with its keys "
        f"(default {STALE_AFTER_S}, i.e. 15 min: longer than a worker's retry budget plus its drain deadline, so "
        "a saga a live worker is on is never taken)",
    )

    reconciling = command(
        "reconcile",
        "reconcile:reconcile",
        "read links' invoices from Stripe and publish the lifecycle events webhooks missed",
        "For created links whose lifecycle is not final (paid or void), reads the invoice from Stripe and publishes\n"
        "the lifecycle events that are missing (a lost or misconfigured webhook). Events have deterministic ids, so\n"
        "what a webhook already published is not published again. A table of the links and a summary go to stdout.",
    )
    reconciling.add_argument(
        "--since",
        type=moment,
        default=timedelta(hours=72),
        metavar="WHEN",
        help="links updated from WHEN: ISO date/time, or 72h (= 72 hours ago; the default)",
    )
    reconciling.add_argument("--account", metavar="ACCOUNT_ID", help="only this CRM account")
    reconciling.add_argument("--limit", type=int, default=10_000, help="at most this many links (default 10000)")
    reconciling.add_argument("--dry-run", action="store_true", help="read and list; publish nothing")

    letters = command(
        "dead-letters", None, "inspect, retry and purge dead letters (messages that could not be processed)"
    )
    letters_sub = letters.add_subparsers(dest="letters_command", required=True, metavar="ACTION")

    def letters_command(name: str, run: CommandRef, summary: str, description: str = "") -> argparse.ArgumentParser:
        child = letters_sub.add_parser(
            name,
            help=summary,
            description=description or summary,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        child.set_defaults(run=run)
        return child

    listing = letters_command("list", "dead_letters:dead_letters_list", "list dead letters, newest first")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = letters_command(
        "show",
        "dead_letters:dead_letters_show",
        "print one dead letter's raw message",
        "Writes the raw message to stdout byte for byte, and the record (reason, message, topic, partition, offset,\n"
        "times, Kafka key and headers) to stderr as 'key: value' lines: `paylink dead-letters show ID > m.json`.",
    )
    show.add_argument("id", metavar="ID", help="TOPIC:PARTITION:OFFSET, as `list` shows it")
    retry = letters_command(
        "retry",
        "dead_letters:dead_letters_retry",
        "re-publish a dead letter (validated first), with its original Kafka key and headers",
        "Validates the dead letter's message (or --file, an edited copy: `paylink dead-letters show ID > m.json`)\n"
        "as the worker does, re-publishes it to the topic it came from with its original key and headers (minus\n"
        "stale trace/CloudEvents ones, plus paylink-retried-from), and marks the letter retried with the event's\n"
        "id, printed on stdout. A letter already retried is not sent again (said on stderr, exit 0). Exit 2 when\n"
        "the message does not validate (nothing sent), 1 when there is no such letter.",
    )
    retry.add_argument("id", metavar="ID", help="TOPIC:PARTITION:OFFSET, as `list` shows it")
    retry.add_argument("--file", metavar="PATH", help="send this edited message instead of the stored bytes")
    retry.add_argument("--dry-run", action="store_true", help="validate and say what would be sent; send nothing")
    purge = letters_command("purge", "dead_letters:dead_letters_purge", "delete dead letters by id, by filters, or all")
    purge.add_argument("--id", dest="ids", action="append", default=[], metavar="ID", help="this letter (repeatable)")
    _filters(purge)
    purge.add_argument("--all", action="store_true", help="every dead letter (required when no filter is given)")
    purge.add_argument("--dry-run", action="store_true", help="list what would be purged; delete nothing")

    add_show(command)
    report = command(
        "status",
        "status:status",
        "a verdict (healthy/degraded/down, with reasons) and lag, sagas, outbox, relay, dead letters, failures",
        "Gives a verdict, healthy, degraded or down, with its reasons, then the figures behind it: consumer lag\n"
        "and live group members, sagas by status and failures by reason x retryable in the window, the outbox\n"
        "backlog and its oldest entry, the relay lease, dead letters, links by lifecycle status.\n"
        "Exit 0 healthy, 1 degraded, 4 down, 3 down because Kafka or MongoDB is unreachable\n"
        "(docs/operations.md lists the rules).",
    )
    report.add_argument(
        "--window",
        type=duration,
        default=timedelta(hours=1),
        metavar="DURATION",
        help="count sagas updated within this window (default 1h)",
    )
    report.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    report.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C (tables only)")
    report.add_argument(
        "--interval", type=seconds, default=5.0, metavar="SECONDS", help="--watch refresh period (default 5)"
    )

    schemas = command(
        "schema",
        "schema:schema_command",
        "print the events' JSON Schemas (or the AsyncAPI document)",
        "Prints the JSON Schemas of every event (requests, cancels, results, lifecycle events) as one JSON "
        "object,\nor with --asyncapi the AsyncAPI 3.0 document of both topics (YAML; deploy/asyncapi.yaml is "
        "its copy\nfor the default settings), or with --settings the table of every PAYLINK_* setting.",
    )
    choice = schemas.add_mutually_exclusive_group()
    choice.add_argument("--asyncapi", action="store_true", help="the AsyncAPI 3.0 document (YAML)")
    choice.add_argument("--settings", action="store_true", help="the settings table (Markdown)")
    return parser
