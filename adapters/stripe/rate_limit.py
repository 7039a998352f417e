"""A client-side rate limiter per Stripe connected account, shared by every saga of the process.

Stripe limits requests per account (live mode 100/s, test mode 25/s). Spacing requests below the limit
beats discovering it through 429s: a 429 costs a round trip and a backoff.

- **Rate and burst**: a token bucket per account (kept as GCRA: one "theoretical arrival time" per
  account), ``rate_per_s`` tokens per second, at most ``burst`` at once after a quiet period; and, on
  top, never more than ``rate_per_s`` slots in any rolling second, which is how Stripe (and the emulator)
  count. A bucket alone lets ``burst - 1`` extra requests into the second that starts with a burst; a
  plain ``burst=1`` avoids that by spacing every request ``1/rate`` apart, but then a lone saga's five
  calls wait 10 ms each at 100/s (the bench saw 54 ms per saga at 0 ms Stripe latency, 20 ms without
  the spacing). With both, short bursts go at once and sustained load is spaced at the rate.
- **Fairness**: each ``acquire`` reserves the next free slot of its account when it is called and
  sleeps until then, so waiters of one account go in arrival order, and a busy account never delays
  another (buckets are independent). No lock: a reservation is a few arithmetic steps without ``await``.
- **429s**: ``pause(account, seconds)`` (the adapter calls it on a 429 that carries ``Retry-After``)
  stops the account for that long: later reservations start after the pause, and waiters whose slot
  falls inside it take a new slot after it instead of all going at once.
- **Departures, not reservations**: a waiter woken late (a busy event loop) leaves late, and the one
  reserved a second after it, woken on time, would then reach Stripe less than a second after it. So
  ``acquire`` also keeps the rolling second over the times requests really left: before returning it
  waits until the ``rate``-th newest departure is a second (plus the margin) old (issue 16: 2.7 % of
  the calls were 429s at 25/s on a loaded box, all from late wake-ups).
- **Jitter margin**: every account starts with ``INITIAL_MARGIN_S`` (20 ms) of slack on its rolling
  second, for the jitter between leaving here and arriving there (10 ms still drew 1.6 % of 429s at
  25/s on a box at load 8). A 429 *without* ``Retry-After`` means that was not enough:
  ``widen(account)`` (the adapter calls it on such a 429) adds 10 ms, up to 40 ms
  (at 25/s the ceiling is then 25 per 1.04 s, 96 % of the limit; it was 100 ms, 91 %, and the bench's
  saturation stuck there after a few 429s).
- A cancelled waiter that held the newest reservation gives its slot back.

``clock`` and ``sleep`` are injectable, so tests run on a virtual clock without sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class _Account:
    tat: float  # theoretical arrival time: when the bucket would be full again, as if requests were spaced
    paused_until: float = 0.0
    slots: deque[float] = field(default_factory=deque)  # the newest slots (``per_second`` + 1), in order
    tat_before: float = 0.0  # ``tat`` before the newest reservation, to undo it exactly
    margin: float = 0.0  # slack added to the rolling second; grows after 429s without Retry-After (``widen``)
    departures: deque[float] = field(default_factory=deque)  # when the newest ``per_second`` requests left


INITIAL_MARGIN_S = 0.02
MARGIN_STEP_S = 0.01
MARGIN_MAX_S = 0.04


class AccountRateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        margin_s: float = INITIAL_MARGIN_S,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self.interval = 1.0 / rate_per_s
        self.per_second = max(1, math.floor(rate_per_s))
        self._tolerance = (burst - 1.0) * self.interval
        self._clock = clock
        self._sleep = sleep
        self._accounts: dict[str, _Account] = {}
        self._initial_margin = margin_s

    def _account(self, account: str) -> _Account:
        state = self._accounts.get(account)
        if state is None:
            state = self._accounts[account] = _Account(tat=self._clock(), margin=self._initial_margin)
        return state

    def reserve(self, account: str) -> float:
        """Takes the next slot of ``account``; returns how long to wait before using it (seconds)."""
        now = self._clock()
        state = self._account(account)
        start = max(now, state.tat - self._tolerance, state.paused_until)
        state.tat_before = state.tat
        state.tat = max(state.tat, start) + self.interval
        if len(state.slots) >= self.per_second:
            # Less a microsecond: at exactly the rate the cap and the spacing meet, and float rounding
            # would otherwise push every rate-th slot past the one the spacing gives.
            capped = state.slots[-self.per_second] + 1.0 + state.margin - 1e-6
            if capped > start:
                # The bucket counts as empty after the cap: the slots that follow are spaced, not sent
                # in a clump at the second's boundary, where a server's clock may still count the last ones.
                start = capped
                state.tat = capped + self.interval + self._tolerance
        state.slots.append(start)
        while len(state.slots) > self.per_second + 1:  # one more than the check needs: see give_back
            state.slots.popleft()
        return start - now

    def give_back(self, account: str) -> None:
        """Returns the newest slot of ``account`` (its waiter gave up before its turn). Only the newest:
        returning an older one would move the slots reserved after it."""
        state = self._accounts[account]
        if state.slots:
            state.slots.pop()
            state.tat = state.tat_before

    def pause(self, account: str, seconds: float) -> None:
        """Stops ``account`` for ``seconds`` from now (Stripe answered 429)."""
        now = self._clock()
        state = self._account(account)
        state.paused_until = max(state.paused_until, now + seconds)
        # The bucket restarts empty after the pause: no burst right after Stripe said "too many".
        state.tat = max(state.tat, state.paused_until + self._tolerance)

    def widen(self, account: str) -> None:
        """Adds ``MARGIN_STEP_S`` (up to ``MARGIN_MAX_S``) to ``account``'s rolling second: a 429 without
        ``Retry-After`` said slots a second apart here arrived closer together at Stripe."""
        state = self._account(account)
        state.margin = min(MARGIN_MAX_S, state.margin + MARGIN_STEP_S)

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
                    if state.tat == reserved:  # still the newest reservation
                        self.give_back(account)
                    raise
            if state.paused_until <= self._clock():
                return await self._depart(state)
            # A 429 paused the account while this waiter slept: queue again behind the pause.

    async def _depart(self, state: _Account) -> None:
        """Waits until the ``per_second``-th newest departure is a rolling second (plus margin) old, then
        records this one: no check and record are separated by an ``await``, so none slips in between."""
        while len(state.departures) >= self.per_second:
            wait = state.departures[-self.per_second] + 1.0 + state.margin - 1e-6 - self._clock()
            if wait <= 0:
                break
            await self._sleep(wait)  # woken late, an earlier waiter left late: keep a second after it
        state.departures.append(self._clock())
        while len(state.departures) > self.per_second:
            state.departures.popleft()
