"""The per-account Stripe rate limiter on a virtual clock: rate, burst, fairness, 429 pauses, cancellation."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from adapters.stripe.rate_limit import AccountRateLimiter
from consumer.runtime.settings import Settings


class VirtualTime:
    """A clock that only moves when a sleeper sleeps: each ``sleep`` advances it to the sleeper's wake-up
    time in wake-up order, so concurrent waiters run as they would in real time, instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sent: list[tuple[float, str]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = self.now + seconds
        await asyncio.sleep(0)  # let every runnable waiter reserve first
        self.now = max(self.now, wake)  # sleepers resume in wake-up order, so time only moves forward


def limiter(time: VirtualTime, rate: float, burst: float = 1.0, margin_s: float = 0.0) -> AccountRateLimiter:
    """Without the initial margin unless asked: these tests check the rate itself."""
    return AccountRateLimiter(rate, burst, clock=time.clock, sleep=time.sleep, margin_s=margin_s)


def test_reservations_are_spaced_at_the_rate() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=25)
    delays = [bucket.reserve("acct_a") for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])


def test_sustained_rate_over_a_virtual_minute() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=25)
    sent = 0
    for _ in range(60 * 100):  # ask every 10 ms, send when the slot has come
        if bucket.reserve("acct_a") == 0.0:
            sent += 1
        else:
            bucket.give_back("acct_a")  # not taken
        time.now += 0.01
    assert sent == pytest.approx(60 * 25, abs=1)


def test_burst_after_a_quiet_period_then_the_rate() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=10, burst=3)
    bucket.reserve("acct_a")
    time.now += 5.0  # quiet: the bucket refills, up to the burst
    delays = [bucket.reserve("acct_a") for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_accounts_do_not_share_a_bucket() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=1)
    assert [bucket.reserve("acct_busy") for _ in range(3)] == pytest.approx([0.0, 1.0, 2.0])
    assert bucket.reserve("acct_quiet") == 0.0  # not queued behind the busy account


async def test_waiters_of_one_account_go_in_arrival_order() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=50)
    order: list[int] = []

    async def request(n: int) -> None:
        await bucket.acquire("acct_a")
        order.append(n)
        time.sent.append((time.now, "acct_a"))

    await asyncio.gather(*(request(n) for n in range(20)))
    assert order == list(range(20))
    moments = [moment for moment, _ in time.sent]
    assert [b - a for a, b in itertools.pairwise(moments)] == pytest.approx([0.02] * 19)


async def test_a_busy_account_does_not_slow_another() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=10)
    done: dict[str, float] = {}

    async def request(account: str, n: int) -> None:
        await bucket.acquire(account)
        done[f"{account}-{n}"] = time.now

    start = time.now
    await asyncio.gather(*(request("acct_busy", n) for n in range(30)), request("acct_quiet", 0))
    assert done["acct_quiet-0"] == start
    assert done["acct_busy-29"] == pytest.approx(start + 2.9)


async def test_a_pause_holds_new_and_waiting_requests_and_keeps_the_spacing() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=10)
    start = time.now
    sent: list[float] = []

    async def request() -> None:
        await bucket.acquire("acct_a")
        sent.append(time.now - start)

    waiting = [asyncio.create_task(request()) for _ in range(3)]  # slots at 0.0, 0.1, 0.2
    await asyncio.sleep(0)
    bucket.pause("acct_a", 1.0)  # Stripe said 429, Retry-After: 1 (as if answered at once)
    await asyncio.gather(*waiting)
    assert sent[0] == 0.0  # had its slot before the pause
    assert sent[1:] == pytest.approx([1.0, 1.1])  # after the pause, one slot apart, no burst
    assert bucket.reserve("acct_a") == pytest.approx(1.2 - (time.now - start))


async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=1)
    bucket.reserve("acct_a")  # slot at 0: now the next is 1 s away
    waiter = asyncio.create_task(bucket.acquire("acct_a"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.reserve("acct_a") == pytest.approx(1.0)  # not 2.0: the cancelled slot was returned


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        AccountRateLimiter(0)
    with pytest.raises(ValueError):
        AccountRateLimiter(10, burst=0.5)


def test_a_429_with_retry_after_carries_the_hint() -> None:
    import stripe

    from adapters.stripe.errors import translate
    from domain.errors import RetryableError

    error = stripe.RateLimitError("Too many requests", http_status=429, headers={"Retry-After": "2"})
    translated = translate(error, "invoices.create")
    assert isinstance(translated, RetryableError) and translated.retry_after_s == 2.0
    plain = translate(stripe.RateLimitError("Too many requests", http_status=429, headers={}), "invoices.create")
    assert isinstance(plain, RetryableError) and plain.retry_after_s is None


def test_the_worker_backoff_waits_at_least_the_hint() -> None:
    from tenacity import AsyncRetrying, RetryCallState

    from consumer.app.retry import RetryPolicy
    from domain.errors import RetryableError

    policy = RetryPolicy(attempts=3, initial_s=0.1, max_s=0.1)
    state = RetryCallState(AsyncRetrying(), None, (), {})
    state.set_exception((RetryableError, RetryableError(retry_after_s=3.0), None))
    assert policy.wait(state) == 3.0
    state.set_exception((RetryableError, RetryableError(), None))
    assert 0 <= policy.wait(state) <= 0.1


def test_a_burst_goes_at_once_but_no_rolling_second_holds_more_than_the_rate() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=10, burst=5)
    slots = []
    for _ in range(40):  # a saturating stream: every request asks as soon as the previous one went
        slots.append(time.now + bucket.reserve("acct_a"))
        time.now = slots[-1]
    assert slots[:5] == pytest.approx([1000.0] * 5)  # the burst: no spacing
    busiest = max(sum(1 for t in slots if start <= t < start + 0.999) for start in slots)  # ms resolution
    assert busiest == 10  # a bucket alone lets burst - 1 = 4 more into the first second
    assert 3.0 < slots[-1] - slots[0] < 4.0  # sustained: the rate, 40 requests in four rolling seconds
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots[5:])]
    assert min(gaps) == pytest.approx(0.1)  # after the first burst, no clump at a second's boundary


def test_a_lone_sagas_calls_are_not_spaced_when_the_account_is_quiet() -> None:
    time = VirtualTime()
    defaults = Settings()  # what the worker gets unless configured otherwise
    bucket = limiter(time, rate=defaults.stripe_rate_limit_per_s, burst=defaults.stripe_rate_burst)
    for _ in range(3):  # three sagas a second apart, five calls each, 2 ms between calls
        delays = []
        for _ in range(5):
            delays.append(bucket.reserve("acct_a"))
            time.now += 0.002
        assert delays == [0.0] * 5
        time.now += 1.0


def test_a_given_back_slot_is_taken_by_the_next_waiter() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=2, burst=1)
    assert [bucket.reserve("acct_a") for _ in range(3)] == pytest.approx([0.0, 0.5, 1.0])
    bucket.give_back("acct_a")
    assert bucket.reserve("acct_a") == pytest.approx(1.0)


def test_a_widened_account_keeps_slack_in_every_rolling_second() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=10, burst=1)
    for _ in range(3):  # three 429s without Retry-After: 30 ms of slack
        bucket.widen("acct_a")
    slots = []
    for _ in range(40):
        slots.append(time.now + bucket.reserve("acct_a"))
        time.now = slots[-1]
    busiest = max(sum(1 for t in slots if start <= t < start + 1.0299) for start in slots)
    assert busiest == 10  # a server whose clock lags ours by up to 30 ms still counts 10 per second
    for _ in range(20):
        bucket.widen("acct_a")
    assert bucket.reserve("acct_b") == 0.0  # other accounts keep their own rolling second


def test_widening_stops_at_forty_milliseconds() -> None:
    time = VirtualTime()
    bucket = limiter(time, rate=10, burst=1)
    for _ in range(50):
        bucket.widen("acct_a")
    slots = []
    for _ in range(31):
        slots.append(time.now + bucket.reserve("acct_a"))
        time.now = slots[-1]
    assert slots[-1] - slots[0] == pytest.approx(3 * 1.04, abs=0.005)  # 10 per 1.04 s: 96 % of the rate


def test_every_account_starts_with_twenty_milliseconds_of_slack() -> None:
    time = VirtualTime()
    bucket = AccountRateLimiter(10, 1, clock=time.clock, sleep=time.sleep)  # the default margin
    slots = []
    for _ in range(31):
        slots.append(time.now + bucket.reserve("acct_a"))
        time.now = slots[-1]
    assert slots[-1] - slots[0] == pytest.approx(3 * 1.02, abs=0.005)  # 10 per 1.02 s


class LateWaker(VirtualTime):
    """Wakes the first sleeper 300 ms late: a busy event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.late_s = 0.3

    async def sleep(self, seconds: float) -> None:
        wake, late, self.late_s = self.now + seconds, self.late_s, 0.0
        await asyncio.sleep(0)
        self.now = max(self.now, wake + late)


async def test_a_waiter_woken_late_holds_back_the_one_a_second_after_it() -> None:
    time = LateWaker()
    bucket = limiter(time, rate=5)
    departures: list[float] = []

    async def call() -> None:
        await bucket.acquire("acct_a")
        departures.append(time.now)

    # Slots 0, 0.2, ... 1.8 s; the one at 0.2 s leaves at 0.5 s, so the one at 1.2 s must wait for 1.5 s.
    await asyncio.gather(*(call() for _ in range(10)))
    in_any_second = max(sum(1 for t in departures if start <= t < start + 0.999) for start in departures)
    assert in_any_second == 5, departures
