"""``paylink replay``: chooses failed sagas, re-runs them here (``consumer.app.replay``), reports each."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, timedelta

from consumer.app.replay import ReplaySelection, ReplayTally, ReplayTarget
from consumer.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Progress, print_table
from consumer.runtime.bootstrap import build_replayer, open_components, with_timeout
from consumer.runtime.settings import Settings
from consumer.runtime.tracing import configure as configure_tracing

DRY_RUN_HEADERS = ["PAYMENT_LINK_ID", "STATUS", "REASON", "RETRYABLE", "STEP", "ACCOUNT", "ATTEMPT", "UPDATED_AT"]


def replay(args: argparse.Namespace, settings: Settings) -> int:
    filtered = any(getattr(args, name) is not None for name in ("reason", "account", "since", "until"))
    if [bool(args.event_id), filtered, args.all].count(True) != 1:
        print(
            "paylink replay: choose by --event-id(s), or by filters (--reason/--account/--since/--until), or --all",
            file=sys.stderr,
        )
        return EXIT_USAGE
    selection = ReplaySelection(
        args.event_id,
        args.reason,
        args.account,
        args.since,
        args.until,
        args.limit,
        stale_after=timedelta(seconds=args.stale_after),
    )
    configure_tracing("paylink-replay")
    return asyncio.run(run_replay(settings, selection, dry_run=args.dry_run, concurrency=args.concurrency))


async def run_replay(
    settings: Settings, selection: ReplaySelection, *, dry_run: bool = False, concurrency: int = 4
) -> int:
    """Replays ``selection`` (or lists it, with ``dry_run``); returns the command's exit code."""
    settings = settings.model_copy(update={"mongodb_uri": with_timeout(settings.mongodb_uri)})
    async with open_components(settings) as components:
        replayer = build_replayer(components)
        targets = await replayer.targets(selection)
        if dry_run:
            print_table(DRY_RUN_HEADERS, [target_row(target) for target in targets])
            print(f"{sum(t.replayable for t in targets)} of {len(targets)} would be replayed")
            return EXIT_OK
        tally = ReplayTally()
        progress = Progress(len(targets), "replaying")
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(target: ReplayTarget) -> None:
            async with gate:
                progress.line(f"{target.payment_link_id}  {await replayer.replay_one(target, tally)}")
                progress.advance()

        try:
            await asyncio.gather(*(one(target) for target in targets))
        finally:
            progress.close()
        print(tally.summary())
        return EXIT_OK if tally.all_succeeded else EXIT_FAILED


async def replay_requests(settings: Settings, event_ids: list[str]) -> int:
    """Replays ``event_ids``; returns the command's exit code (0 when every one ended created or was)."""
    return await run_replay(settings, ReplaySelection(event_ids=event_ids))


def target_row(target: ReplayTarget) -> list[object]:
    if target.cancel is not None:
        cancel = target.cancel
        result = cancel.result or {}
        updated = cancel.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = f"cancel {cancel.status.value}"
        return [
            target.payment_link_id,
            status,
            result.get("reason"),
            result.get("retryable"),
            None,
            cancel.account_id,
            cancel.attempt,
            updated,
        ]
    record, failure = target.record, target.record.failure if target.record else None
    if record is None:
        return [target.payment_link_id, "not found", None, None, None, None, None, None]
    return [
        target.payment_link_id,
        f"{record.status.value} (abandoned)" if target.abandoned else record.status.value,
        failure.reason.value if failure else None,
        failure.retryable if failure else None,
        failure.failed_step.value if failure else None,
        record.account_id,
        record.attempt,
        record.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
