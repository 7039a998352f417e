"""Fakes of the small ports: a settable clock, predictable ids and a shortener that can misbehave."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime, timedelta


class FakeClock:
    def __init__(self, start: datetime = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


class SequentialIds:
    def __init__(self) -> None:
        self.issued = 0

    def new_id(self) -> str:
        self.issued += 1
        return str(uuid.UUID(int=self.issued))


class FakeShortener:
    """``mode``: "ok" (short URL), "none" (the port's failure answer) or "raise" (a contract breach)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.calls: list[str] = []

    async def shorten(self, url: str) -> str | None:
        self.calls.append(url)
        if self.mode == "raise":
            raise RuntimeError("shortener exploded")
        if self.mode == "none":
            return None
        return f"https://pl.test/{zlib.crc32(url.encode()):08x}"  # stable per URL, like most shorteners
