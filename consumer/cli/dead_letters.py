"""``paylink dead-letters list|show|retry|purge``: messages that could not be processed, and their repair.

``show`` writes the raw message to stdout byte for byte and the record as ``key: value`` lines to
stderr, so ``paylink dead-letters show ID > message.bin`` keeps the exact bytes; edit that file and
``paylink dead-letters retry ID --file message.bin`` re-publishes it (``consumer.app.dead_letter_repair``).
``purge --id ID`` deletes one letter; ``purge --dry-run`` lists what would go.

Exit codes of ``retry``: 0 sent (or already retried: said on stderr, nothing sent), 1 no such letter,
2 the message (or the edit) does not validate: nothing sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from consumer.app.dead_letter_repair import Retry, Verdict, printable_headers, retry_dead_letter
from consumer.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, iso, print_table
from consumer.runtime.bootstrap import open_stores
from consumer.runtime.settings import Settings
from domain.stored import DeadLetter


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"reason": args.reason, "account_id": args.account, "since": args.since, "until": args.until}


async def _letters(settings: Settings, action: str, **kw: Any) -> Any:
    async with open_stores(settings) as stores:
        return await getattr(stores.dead_letters, action)(**kw)


def dead_letters_list(args: argparse.Namespace, settings: Settings) -> int:
    letters = asyncio.run(_letters(settings, "find", limit=args.limit, **_filters(args)))
    if args.json:
        for letter in letters:
            print(json.dumps(_fields(letter), default=iso))
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
    for key, value in _fields(letter).items():
        print(f"{key}: {iso(value) if isinstance(value, datetime) else value}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.buffer.write(letter.raw)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _fields(letter: DeadLetter) -> dict[str, Any]:
    """The record without its raw bytes (their count instead); key and headers as text."""
    fields = {k: v for k, v in vars(letter).items() if k not in ("raw", "key", "headers")}
    key = letter.key.decode("utf-8", "backslashreplace") if letter.key is not None else None
    return {**fields, "key": key, "headers": printable_headers(letter.headers), "bytes": len(letter.raw)}


def dead_letters_purge(args: argparse.Namespace, settings: Settings) -> int:
    filters = _filters(args)
    chosen = [bool(args.ids), args.all, any(value is not None for value in filters.values())]
    if chosen.count(True) != 1:
        print(
            "paylink dead-letters purge: give one of --id, filters (--reason/--account/--since/--until) or --all",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.ids:
        return _purge_ids(settings, args.ids, args.dry_run)
    if args.dry_run:
        letters = asyncio.run(_letters(settings, "find", limit=0, **filters))
        _print_purgeable(letters)
        print(f"would purge {len(letters)} dead letter(s)")
        return EXIT_OK
    purged = asyncio.run(_letters(settings, "purge", **filters))
    print(f"purged {purged} dead letter(s)")
    return EXIT_OK


def _purge_ids(settings: Settings, ids: list[str], dry_run: bool) -> int:
    async def run() -> tuple[list[DeadLetter], int]:
        async with open_stores(settings) as stores:
            found = [letter for letter in [await stores.dead_letters.get(i) for i in ids] if letter is not None]
            if dry_run:
                return found, 0
            return found, sum([await stores.dead_letters.delete(letter.id) for letter in found])

    found, purged = asyncio.run(run())
    missing = sorted(set(ids) - {letter.id for letter in found})
    for letter_id in missing:
        print(f"paylink dead-letters purge: no dead letter {letter_id!r}", file=sys.stderr)
    if dry_run:
        _print_purgeable(found)
        print(f"would purge {len(found)} dead letter(s)")
    else:
        print(f"purged {purged} dead letter(s)")
    return EXIT_FAILED if missing else EXIT_OK


def _print_purgeable(letters: list[DeadLetter]) -> None:
    print_table(
        ["ID", "FIRST_FAILED_AT", "REASON", "EVENT_ID", "RETRIED_AS"],
        [[d.id, iso(d.first_failed_at), d.reason, d.event_id, d.retried_as] for d in letters],
    )


def dead_letters_retry(args: argparse.Namespace, settings: Settings) -> int:
    try:
        edited = Path(args.file).read_bytes() if args.file else None
    except OSError as problem:
        print(f"paylink dead-letters retry: {problem}", file=sys.stderr)
        return EXIT_USAGE
    outcome = asyncio.run(_retry(settings, args.id, edited, args.dry_run))
    return report_retry(args.id, outcome)


async def _retry(settings: Settings, letter_id: str, edited: bytes | None, dry_run: bool) -> Retry:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True)

    async def send(topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        await producer.start()
        await producer.send_and_wait(topic, value, key=key, headers=headers)

    try:
        async with open_stores(settings) as stores:
            return await retry_dead_letter(
                stores.dead_letters, letter_id, send, datetime.now(UTC), edited=edited, dry_run=dry_run
            )
    finally:
        await producer.stop()


def report_retry(letter_id: str, outcome: Retry) -> int:
    """Prints the outcome (result on stdout, problems on stderr); returns the exit code."""
    prefix = "paylink dead-letters retry"
    if outcome.verdict is Verdict.NOT_FOUND:
        print(f"{prefix}: no dead letter {letter_id!r}", file=sys.stderr)
        return EXIT_FAILED
    if outcome.verdict is Verdict.ALREADY_RETRIED:
        print(f"{prefix}: {letter_id} was already retried as {outcome.event_id}; nothing sent", file=sys.stderr)
        print(outcome.event_id)
        return EXIT_OK
    if outcome.verdict is Verdict.INVALID:
        print(f"{prefix}: not sent, the message does not validate: {outcome.problem}", file=sys.stderr)
        return EXIT_USAGE
    assert outcome.letter is not None
    key = outcome.letter.key.decode("utf-8", "backslashreplace") if outcome.letter.key is not None else None
    what = "would re-publish" if outcome.verdict is Verdict.WOULD_SEND else "re-published"
    print(
        f"{what} {letter_id} to {outcome.letter.topic} as event {outcome.event_id} (key {key!r}, "
        f"headers {sorted(printable_headers(outcome.headers))})",
        file=sys.stderr,
    )
    print(outcome.event_id)
    return EXIT_OK
