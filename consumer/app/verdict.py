"""``paylink status``'s verdict: healthy, degraded or down, with the reasons, from what status observed.

A pure function of ``Observed`` and ``Thresholds``, so the rules are unit-tested without a stack.

down (requests are not being turned into published results):
- a dependency (Kafka, MongoDB) is unreachable;
- no live member in the worker's consumer group (no worker consumes);
- no relay holds the outbox lease (never held, or lapsed: results are not published);
- the oldest unpublished outbox entry is older than ``outbox_down_s``.

degraded (it works, with something to look at):
- the oldest unpublished outbox entry is older than ``outbox_degraded_s``;
- the worker group's lag is above ``lag_degraded``;
- dead letters were recorded within the window;
- sagas failed retryably within the window (a dependency was down: ``paylink replay`` resumes them);
- sagas ended ``compensation_failed`` within the window (an invoice needs cleanup).

healthy otherwise. Exit codes (``STATUS_EXIT``): 0 healthy, 1 degraded, 4 down; 3 when down because a
dependency is unreachable (as every command).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


EXIT_DEGRADED, EXIT_DOWN_UNREACHABLE, EXIT_DOWN = 1, 3, 4


@dataclass(frozen=True)
class Thresholds:
    outbox_degraded_s: float = 30.0
    outbox_down_s: float = 300.0
    lag_degraded: int = 1000


@dataclass(frozen=True)
class Observed:
    """What status saw; None where the part could not be read (its dependency is in ``unreachable``)."""

    unreachable: tuple[str, ...] = ()
    members: int | None = None
    total_lag: int | None = None
    relay_owner: str | None = None
    relay_held: bool | None = None
    outbox_oldest_age_s: float | None = None
    dead_letters_in_window: int = 0
    retryable_failures_in_window: int = 0
    compensation_failed_in_window: int = 0
    window: str = "1h"


@dataclass(frozen=True)
class Verdict:
    health: Health
    reasons: tuple[str, ...] = field(default=())
    unreachable: bool = False

    @property
    def exit_code(self) -> int:
        if self.health is Health.HEALTHY:
            return 0
        if self.health is Health.DEGRADED:
            return EXIT_DEGRADED
        return EXIT_DOWN_UNREACHABLE if self.unreachable else EXIT_DOWN


def judge(seen: Observed, limits: Thresholds = Thresholds()) -> Verdict:
    down = _down_reasons(seen, limits)
    if down:
        return Verdict(Health.DOWN, tuple(down), unreachable=bool(seen.unreachable))
    degraded = _degraded_reasons(seen, limits)
    return Verdict(Health.DEGRADED, tuple(degraded)) if degraded else Verdict(Health.HEALTHY)


def _down_reasons(seen: Observed, limits: Thresholds) -> list[str]:
    reasons = [f"{name} unreachable" for name in seen.unreachable]
    if seen.members == 0:
        reasons.append("no worker: the consumer group has no live member")
    if seen.relay_held is False:
        lapsed = f"lease of {seen.relay_owner} lapsed" if seen.relay_owner else "the lease was never held"
        reasons.append(f"no active relay: {lapsed}")
    age = seen.outbox_oldest_age_s
    if age is not None and age > limits.outbox_down_s:
        reasons.append(f"oldest unpublished result is {age:.0f} s old (> {limits.outbox_down_s:.0f} s)")
    return reasons


def _degraded_reasons(seen: Observed, limits: Thresholds) -> list[str]:
    reasons: list[str] = []
    age = seen.outbox_oldest_age_s
    if age is not None and age > limits.outbox_degraded_s:
        reasons.append(f"oldest unpublished result is {age:.0f} s old (> {limits.outbox_degraded_s:.0f} s)")
    if seen.total_lag is not None and seen.total_lag > limits.lag_degraded:
        reasons.append(f"consumer lag {seen.total_lag} (> {limits.lag_degraded})")
    if seen.dead_letters_in_window:
        reasons.append(f"{seen.dead_letters_in_window} dead letter(s) in the last {seen.window}")
    if seen.retryable_failures_in_window:
        reasons.append(f"{seen.retryable_failures_in_window} retryable failure(s) in the last {seen.window}")
    if seen.compensation_failed_in_window:
        reasons.append(f"{seen.compensation_failed_in_window} compensation(s) failed in the last {seen.window}")
    return reasons
