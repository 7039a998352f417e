"""``paylink worker``, ``relay`` and ``webhooks``: the long-running processes (``consumer.runtime.processes``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from consumer.cli.output import EXIT_OK, EXIT_USAGE
from consumer.runtime.processes import configure_logging, run_relay, run_webhooks, run_worker
from consumer.runtime.settings import Settings
from consumer.runtime.tracing import configure as configure_tracing


def worker(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings)
    configure_tracing("paylink-worker")
    asyncio.run(run_worker(settings, args.metrics_port))
    return EXIT_OK


def relay(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings)
    configure_tracing("paylink-relay")
    asyncio.run(run_relay(settings, args.metrics_port))
    return EXIT_OK


def webhooks(args: argparse.Namespace, settings: Settings) -> int:
    if args.port is not None:
        settings = settings.model_copy(update={"webhooks_port": args.port})
    if not settings.webhook_secrets():
        print("paylink webhooks: set PAYLINK_STRIPE_WEBHOOK_SECRETS (the endpoint's whsec_... secret)", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings)
    configure_tracing("paylink-webhooks")
    asyncio.run(run_webhooks(settings))
    return EXIT_OK
