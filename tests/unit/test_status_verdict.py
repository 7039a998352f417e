"""``paylink status``'s verdict rules (a pure function) and its rendering, including ``--watch`` frames."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consumer.app.verdict import Health, Observed, Thresholds, Verdict, judge
from consumer.cli.status import observed
from consumer.cli.status_render import CLEAR, render_status, watch_frame

FINE = Observed(members=2, total_lag=3, relay_owner="host:1:a", relay_held=True, outbox_oldest_age_s=None)


def test_all_fine_is_healthy_and_exits_0() -> None:
    verdict = judge(FINE)
    assert verdict == Verdict(Health.HEALTHY) and verdict.exit_code == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"members": 0}, "no worker: the consumer group has no live member"),
        ({"relay_held": False}, "no active relay: lease of host:1:a lapsed"),
        ({"relay_held": False, "relay_owner": None}, "no active relay: the lease was never held"),
        ({"outbox_oldest_age_s": 300.5}, "oldest unpublished result is 300 s old (> 300 s)"),
    ],
)
def test_nothing_flowing_is_down_and_exits_4(change: dict[str, Any], reason: str) -> None:
    verdict = judge(Observed(**{**vars(FINE), **change}))
    assert (verdict.health, verdict.reasons, verdict.exit_code) == (Health.DOWN, (reason,), 4)


def test_an_unreachable_dependency_is_down_and_exits_3_with_every_reason() -> None:
    verdict = judge(Observed(**{**vars(FINE), "unreachable": ("kafka",), "members": None, "relay_held": False}))
    assert verdict.health is Health.DOWN and verdict.exit_code == 3
    assert verdict.reasons == ("kafka unreachable", "no active relay: lease of host:1:a lapsed")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"outbox_oldest_age_s": 30.5}, "oldest unpublished result is 30 s old (> 30 s)"),
        ({"total_lag": 1001}, "consumer lag 1001 (> 1000)"),
        ({"dead_letters_in_window": 2}, "2 dead letter(s) in the last 1h"),
        ({"retryable_failures_in_window": 1}, "1 retryable failure(s) in the last 1h"),
        ({"compensation_failed_in_window": 3}, "3 compensation(s) failed in the last 1h"),
    ],
)
def test_something_to_look_at_is_degraded_and_exits_1(change: dict[str, Any], reason: str) -> None:
    verdict = judge(Observed(**{**vars(FINE), **change}))
    assert (verdict.health, verdict.reasons, verdict.exit_code) == (Health.DEGRADED, (reason,), 1)


@pytest.mark.parametrize(("age", "lag", "health"), [(30.0, 1000, Health.HEALTHY), (300.0, 0, Health.DEGRADED)])
def test_thresholds_are_exclusive(age: float, lag: int, health: Health) -> None:
    assert judge(Observed(**{**vars(FINE), "outbox_oldest_age_s": age, "total_lag": lag})).health is health


def test_down_wins_over_degraded_and_thresholds_are_settable() -> None:
    seen = Observed(**{**vars(FINE), "members": 0, "dead_letters_in_window": 5})
    assert judge(seen).reasons == ("no worker: the consumer group has no live member",)
    strict = Thresholds(outbox_degraded_s=1, outbox_down_s=10, lag_degraded=0)
    assert judge(Observed(**{**vars(FINE), "outbox_oldest_age_s": 5}), strict).health is Health.DEGRADED
    assert judge(FINE, strict).reasons == ("consumer lag 3 (> 0)",)


def report(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "unreachable": [],
        "kafka": {
            "topic": "req",
            "group": "g",
            "group_state": "Stable",
            "members": 1,
            "member_list": [{"client_id": "paylink-worker", "host": "/10.0.0.7"}],
            "total_lag": 0,
            "partitions": [{"partition": 0, "committed": 4, "end": 4, "lag": 0}],
        },
        "sagas": {"in_flight": 0, "window_s": 3600, "by_status": {"created": 4, "failed": 2}},
        "outbox": {"backlog": 1, "oldest_age_s": 45.0, "oldest_created_at": "2026-01-01T00:00:00.000Z"},
        "relay": {"lease": "outbox-relay", "owner": "h:1:n", "held": True, "expires_at": "x", "expires_in_s": 9.0},
        "dead_letters": {
            "in_window": 1,
            "total": 3,
            "newest": {"id": "t:0:9", "reason": "invalid_event", "failed_at": "z"},
        },
        "failures": {"rows": [{"reason": "stripe_unavailable", "retryable": True, "count": 2}]},
        "lifecycle": {"by_status": {"open": 3, "overdue": 1, "paid": 1}},
    }
    return {**base, **parts}


def test_the_report_feeds_the_verdict() -> None:
    seen = observed(report(), timedelta(hours=2))
    assert (seen.members, seen.total_lag, seen.relay_held, seen.outbox_oldest_age_s) == (1, 0, True, 45.0)
    assert (seen.dead_letters_in_window, seen.retryable_failures_in_window, seen.window) == (1, 2, "2h")
    unknown = observed(report(outbox={"error": "down"}, relay={"error": "down"}, unreachable=["mongodb"]), timedelta(1))
    assert (unknown.outbox_oldest_age_s, unknown.relay_held, unknown.unreachable) == (None, None, ("mongodb",))


def test_the_rendering_leads_with_the_verdict_and_shows_every_new_part() -> None:
    text = render_status(report(verdict={"health": "degraded", "reasons": ["1 dead letter(s) in the last 1h"]}))
    assert text.startswith("VERDICT DEGRADED\n  1 dead letter(s) in the last 1h\n")
    assert "paylink-worker on /10.0.0.7" in text
    assert "stripe_unavailable  true       2" in text
    assert "1 in the window, 3 in all; newest t:0:9 (invalid_event, z)" in text
    assert "links: open 3, overdue 1, paid 1" in text


def test_a_watch_frame_clears_the_terminal_and_only_the_terminal() -> None:
    on_tty = watch_frame(report(), 2.0, tty=True)
    assert on_tty.startswith(CLEAR + "paylink status, every 2 s") and "OUTBOX\n  backlog 1" in on_tty
    piped = watch_frame(report(), 2.0, tty=False)
    assert CLEAR not in piped and piped.endswith("\n\n")
