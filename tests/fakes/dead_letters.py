"""In-memory ``DeadLetterArchive``: the same id rule (``topic:partition:offset``) and repeat counting as
``adapters.mongo.dead_letters``, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from domain.stored import DeadLetter


class FakeDeadLetters:
    def __init__(self) -> None:
        self.letters: dict[str, DeadLetter] = {}

    async def record(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes,
        reason: str,
        message: str,
        event_id: str | None = None,
        account_id: str | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int | None = None,
    ) -> str:
        letter_id = f"{topic}:{partition}:{offset}"
        known = self.letters.get(letter_id)
        if known is not None:
            self.letters[letter_id] = replace(known, attempts=known.attempts + 1, reason=reason, message=message)
            return letter_id
        self.letters[letter_id] = DeadLetter(
            letter_id, topic, partition, offset, raw, reason, message, event_id, account_id,
            datetime.now(UTC), 1, key, tuple(headers), timestamp_ms,
        )  # fmt: skip
        return letter_id

    async def get(self, letter_id: str) -> DeadLetter | None:
        return self.letters.get(letter_id)

    async def find(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        event_id: str | None = None,
    ) -> list[DeadLetter]:
        found = [
            d
            for d in self.letters.values()
            if (reason is None or d.reason == reason)
            and (account_id is None or d.account_id == account_id)
            and (event_id is None or d.event_id == event_id)
            and (since is None or d.first_failed_at >= since)
            and (until is None or d.first_failed_at < until)
        ]
        newest_first = sorted(found, key=lambda d: d.first_failed_at, reverse=True)
        return newest_first[:limit] if limit else newest_first

    async def purge(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        doomed = await self.find(reason=reason, account_id=account_id, since=since, until=until, limit=0)
        for letter in doomed:
            del self.letters[letter.id]
        return len(doomed)

    async def count(self, since: datetime | None = None) -> int:
        return len(await self.find(since=since, limit=0))

    async def delete(self, letter_id: str) -> bool:
        return self.letters.pop(letter_id, None) is not None

    async def mark_retried(self, letter_id: str, event_id: str, at: datetime) -> bool:
        letter = self.letters.get(letter_id)
        if letter is None or letter.retried_as is not None:
            return False
        self.letters[letter_id] = replace(letter, retried_as=event_id, retried_at=at)
        return True
