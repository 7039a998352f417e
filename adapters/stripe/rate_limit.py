"""A client-side rate limiter per Stripe connected account, shared by every saga of the process.

Stripe limits requests per account (live mode 100/s, test mode 25/s). Spacing requests below the limit
beats discovering it through 429s: a 429 costs a round trip and a backoff.

- **Rate and burst**: a token bucket per account (kept as GCRA: one "theoretical arrival time" per
  account), ``rate_per_s`` tokens per second, at most ``burst`` at once after a quiet period. With the
  default ``burst=1`` requests are evenly spaced ``1/rate`` apart, which is what a server counting
  requests per rolling second accepts.
- **Fairness**: each ``acquire`` reserves the next free slot of its account when it is called and
  sleeps until then, so waiters of one account go in arrival order, and a busy account never delays
  another (buckets are independent). No lock: a reservation is a few arithmetic steps without ``await``.
- **429s**: ``pause(account, seconds)`` (the adapter calls it on a 429 that carries ``Retry-After``)
  stops the account for that long: later reservations start after the pause, and waiters whose slot
  falls inside it take a new slot after it instead of all going at once.
- A cancelled waiter that held the newest reservation gives its slot back.

``clock`` and ``sleep`` are injectable, so tests run on a virtual clock without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class _Account:
    tat: float  # theoretical arrival time: when the bucket would be full again, as if requests were spaced
    paused_until: float = 0.0


class AccountRateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self.interval = 1.0 / rate_per_s
        self._tolerance = (burst - 1.0) * self.interval
        self._clock = clock
        self._sleep = sleep
        self._accounts: dict[str, _Account] = {}

    def reserve(self, account: str) -> float:
        """Takes the next slot of ``account``; returns how long to wait before using it (seconds)."""
        now = self._clock()
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _Account(tat=now)
        start = max(now, state.tat - self._tolerance, state.paused_until)
        state.tat = max(state.tat, now, state.paused_until) + self.interval
        return start - now

    def pause(self, account: str, seconds: float) -> None:
        """Stops ``account`` for ``seconds`` from now (Stripe answered 429)."""
        now = self._clock()
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _Account(tat=now)
        state.paused_until = max(state.paused_until, now + seconds)
        # The bucket restarts empty after the pause: no burst right after Stripe said "too many".
        state.tat = max(state.tat, state.paused_until + self._tolerance)

    async def acquire(self, account: str) -> None:
        """Waits for a slot of ``account`` (in arrival order among its waiters)."""
        while True:
            delay = self.reserve(account)
            state = self._accounts[account]
            if delay > 0:
                reserved = state.tat
                try:
                    await self._sleep(delay)
                except asyncio.CancelledError:
                    if state.tat == reserved:  # still the newest reservation: nobody's slot moves
                        state.tat -= self.interval
                    raise
            if state.paused_until <= self._clock():
                return
            # A 429 paused the account while this waiter slept: queue again behind the pause.
