"""A client-side token bucket per Stripe connected account, shared by every saga of the process.

Stripe limits requests per account (live mode 100/s, test mode 25/s). Spacing requests below the limit
beats discovering it through 429s: a 429 costs a round trip and a backoff. Each ``acquire`` reserves
the next slot and sleeps until it comes (virtual scheduling), so waiters are served in arrival order
and no lock is needed. ``burst`` requests may go at once after a quiet period.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class AccountRateLimiter:
    def __init__(self, rate_per_s: float, burst: float = 1.0) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def reserve(self, account: str) -> float:
        """Takes a token for ``account``; returns how long to wait before using it (seconds)."""
        now = time.monotonic()
        bucket = self._buckets.get(account)
        if bucket is None:
            bucket = self._buckets[account] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        bucket.tokens -= 1
        return max(0.0, -bucket.tokens / self.rate)

    async def acquire(self, account: str) -> None:
        delay = self.reserve(account)
        if delay > 0:
            await asyncio.sleep(delay)
