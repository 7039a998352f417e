"""Offsets are committed only past a contiguous run of finished messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.runtime.offsets import OffsetTracker


def test_out_of_order_completion_waits_for_the_gap() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started("p0", offset)
    tracker.finished("p0", 12)
    tracker.finished("p0", 11)
    assert tracker.to_commit() == {}
    tracker.finished("p0", 10)
    assert tracker.to_commit() == {"p0": 13}


def test_only_changed_offsets_are_reported_again() -> None:
    tracker = OffsetTracker()
    tracker.started("p0", 0)
    tracker.started("p1", 5)
    tracker.finished("p0", 0)
    assert tracker.to_commit() == {"p0": 1}
    tracker.committed({"p0": 1})
    assert tracker.to_commit() == {}
    tracker.finished("p1", 5)
    assert tracker.to_commit() == {"p1": 6}
    assert tracker.to_commit({"p0"}) == {}


def test_forgotten_partition_ignores_late_completions() -> None:
    tracker = OffsetTracker()
    tracker.started("p0", 0)
    tracker.forget({"p0"})
    tracker.finished("p0", 0)
    assert tracker.to_commit() == {}
    assert tracker.in_flight("p0") == 0


@given(st.permutations(list(range(30))), st.integers(min_value=0, max_value=30))
def test_committable_is_the_first_unfinished_offset(order: list[int], finished_count: int) -> None:
    tracker = OffsetTracker()
    for offset in range(30):
        tracker.started("p", offset)
    done = set(order[:finished_count])
    for offset in order[:finished_count]:
        tracker.finished("p", offset)
    first_unfinished = next((o for o in range(30) if o not in done), 30)
    expected = {"p": first_unfinished} if first_unfinished > 0 else {}
    assert tracker.to_commit() == expected
    assert tracker.in_flight("p") == 30 - len(done)
