"""``paylink reconcile``: read the invoices of links that may still change and publish what was missed."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from consumer.app.reconcile import Tally
from consumer.cli.output import EXIT_FAILED, EXIT_OK, Progress, print_table
from consumer.runtime.bootstrap import build_reconciler, open_components, with_timeout
from consumer.runtime.settings import Settings
from consumer.runtime.tracing import configure as configure_tracing
from domain.lifecycle_events import Source

HEADERS = ["PAYMENT_LINK_ID", "ACCOUNT", "INVOICE_STATUS", "EVENTS", "NOTE"]


def reconcile(args: argparse.Namespace, settings: Settings) -> int:
    since = datetime.now(UTC) - args.since if isinstance(args.since, timedelta) else args.since
    configure_tracing("paylink-reconcile")
    return asyncio.run(run_reconcile(settings, since, args.account, args.limit, dry_run=args.dry_run))


async def run_reconcile(
    settings: Settings, since: datetime | None, account: str | None, limit: int, *, dry_run: bool = False
) -> int:
    """Reconciles created links updated since ``since``; returns the exit code (1 if any link failed)."""
    settings = settings.model_copy(update={"mongodb_uri": with_timeout(settings.mongodb_uri)})
    async with open_components(settings) as components:
        reconciler = build_reconciler(components)
        links = await reconciler.links(since=since, account_id=account, limit=limit)
        tally, rows = Tally(), []
        progress = Progress(len(links), "reconciling")
        try:
            for saga in links:
                finding = await reconciler.check(saga, Source.RECONCILE, tally, dry_run=dry_run)
                rows.append(
                    [
                        finding.payment_link_id,
                        finding.account_id,
                        finding.invoice_status,
                        ",".join(finding.events) or None,
                        finding.note or None,
                    ]
                )
                progress.advance()
        finally:
            progress.close()
        print_table(HEADERS, rows)
        print(("dry run: " if dry_run else "") + tally.summary())
        return EXIT_OK if tally.ok else EXIT_FAILED
