"""``paylink``: the one entry point for operators and integrators.

Exit codes: 0 success, 1 the command ran but something failed (e.g. a replay that could not enqueue),
2 bad usage, 3 a dependency (Kafka, MongoDB) could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from consumer.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

Command = Callable[[argparse.Namespace, Settings], int]


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.processes import configure_logging, run_worker

    configure_logging(settings)
    asyncio.run(run_worker(settings, args.metrics_port))
    return EXIT_OK


def _relay(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.processes import configure_logging, run_relay

    configure_logging(settings)
    asyncio.run(run_relay(settings, args.metrics_port))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paylink",
        description="Turns PaymentLinkRequested events into Stripe-hosted invoices with short URLs.",
        epilog="Settings come from PAYLINK_* environment variables (or .env); see the README.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", help="consume requests and run their sagas")
    worker.add_argument("--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on this port")
    worker.set_defaults(run=_worker)

    relay = commands.add_parser("relay", help="publish outbox entries to the results topic")
    relay.add_argument("--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on this port")
    relay.set_defaults(run=_relay)

    from consumer.commands import register

    register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings()
    command: Command = args.run
    try:
        return command(args, settings)
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
