"""``paylink dead-letters list|show|purge``: messages that could not be processed.

``show`` writes the raw message to stdout byte for byte and the record as ``key: value`` lines to
stderr, so ``paylink dead-letters show ID > message.bin`` keeps the exact bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from consumer.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, iso, print_table
from consumer.runtime.bootstrap import open_stores
from consumer.runtime.settings import Settings


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"reason": args.reason, "account_id": args.account, "since": args.since, "until": args.until}


async def _letters(settings: Settings, action: str, **kw: Any) -> Any:
    async with open_stores(settings) as stores:
        return await getattr(stores.dead_letters, action)(**kw)


def dead_letters_list(args: argparse.Namespace, settings: Settings) -> int:
    letters = asyncio.run(_letters(settings, "find", limit=args.limit, **_filters(args)))
    if args.json:
        for letter in letters:
            fields = {k: v for k, v in vars(letter).items() if k != "raw"}
            print(json.dumps({**fields, "bytes": len(letter.raw)}, default=iso))
        return EXIT_OK
    print_table(
        ["ID", "FIRST_FAILED_AT", "ATTEMPTS", "REASON", "EVENT_ID", "ACCOUNT", "BYTES", "MESSAGE"],
        [
            [
                d.id,
                iso(d.first_failed_at),
                d.attempts,
                d.reason,
                d.event_id,
                d.account_id,
                len(d.raw),
                d.message if len(d.message) <= 60 else d.message[:59] + "…",
            ]
            for d in letters
        ],
    )
    return EXIT_OK


def dead_letters_show(args: argparse.Namespace, settings: Settings) -> int:
    letter = asyncio.run(_letters(settings, "get", letter_id=args.id))
    if letter is None:
        print(f"paylink dead-letters: no dead letter {args.id!r}", file=sys.stderr)
        return EXIT_FAILED
    for key, value in vars(letter).items():
        if key != "raw":
            print(f"{key}: {iso(value) if isinstance(value, datetime) else value}", file=sys.stderr)
    print(f"bytes: {len(letter.raw)}", file=sys.stderr, flush=True)
    sys.stdout.buffer.write(letter.raw)
    sys.stdout.buffer.flush()
    return EXIT_OK


def dead_letters_purge(args: argparse.Namespace, settings: Settings) -> int:
    filters = _filters(args)
    if args.all == any(value is not None for value in filters.values()):
        print(
            "paylink dead-letters purge: give filters (--reason/--account/--since/--until) or --all, not both",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.dry_run:
        letters = asyncio.run(_letters(settings, "find", limit=0, **filters))
        print(f"would purge {len(letters)} dead letter(s)")
        return EXIT_OK
    purged = asyncio.run(_letters(settings, "purge", **filters))
    print(f"purged {purged} dead letter(s)")
    return EXIT_OK
