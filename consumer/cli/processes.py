"""``paylink worker`` and ``paylink relay``: the long-running processes (``consumer.runtime.processes``)."""

from __future__ import annotations

import argparse
import asyncio

from consumer.cli.output import EXIT_OK
from consumer.runtime.processes import configure_logging, run_relay, run_worker
from consumer.runtime.settings import Settings


def worker(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings)
    asyncio.run(run_worker(settings, args.metrics_port))
    return EXIT_OK


def relay(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings)
    asyncio.run(run_relay(settings, args.metrics_port))
    return EXIT_OK
