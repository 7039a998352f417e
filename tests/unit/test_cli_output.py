"""What the commands print, without services: the progress line, tables, replay summaries, status."""

from __future__ import annotations

import io

import pytest

from consumer.app.replay import ReplayTally
from consumer.cli.output import Progress, print_table
from consumer.cli.status_render import print_status
from consumer.runtime.bootstrap import with_timeout


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_keeps_result_lines_clean() -> None:
    bar, out = Terminal(), io.StringIO()
    progress = Progress(4, "replaying", stream=bar, out=out)
    for i in range(4):
        progress.line(f"id-{i}  created")
        progress.advance()
    progress.close()
    assert out.getvalue() == "".join(f"id-{i}  created\n" for i in range(4))
    drawn = bar.getvalue()
    assert "\r" in drawn and "\n" not in drawn
    assert "replaying [" + "#" * 30 + "] 4/4" in drawn
    assert drawn.endswith("\r\x1b[K"), "the bar is erased at the end"


def test_progress_is_plain_lines_when_not_a_terminal() -> None:
    bar, out = io.StringIO(), io.StringIO()
    progress = Progress(2, "replaying", stream=bar, out=out)
    progress.line("a")
    progress.advance()
    progress.close()
    assert (bar.getvalue(), out.getvalue()) == ("", "a\n")


def test_table_aligns_columns_and_shows_missing_values() -> None:
    out = io.StringIO()
    print_table(["ID", "REASON"], [["t:0:1", "invalid_event"], ["t:0:22", None]], out)
    assert out.getvalue().splitlines() == ["ID      REASON", "t:0:1   invalid_event", "t:0:22  -"]


@pytest.mark.parametrize(
    ("tally", "code", "text"),
    [
        (ReplayTally(created=2), 0, "replayed 2 (created 2, failed again 0); skipped 0"),
        (ReplayTally(already_succeeded=1, running=1), 0, "skipped 2 (already succeeded 1, still running 1)"),
        (ReplayTally(failed_again=1, reasons={"stripe_unavailable": 1}), 1, "failed again 1: stripe_unavailable 1"),
        (ReplayTally(not_found=1), 1, "not found 1"),
        (ReplayTally(not_enqueued=3), 1, "failed to enqueue 3"),
    ],
)
def test_replay_summary_and_exit_code(tally: ReplayTally, code: int, text: str) -> None:
    assert (0 if tally.all_succeeded else 1) == code
    assert text in tally.summary()


def test_commands_give_mongodb_a_short_server_selection_timeout() -> None:
    assert with_timeout("mongodb://h:27017/paylink") == "mongodb://h:27017/paylink?serverSelectionTimeoutMS=5000"
    assert (
        with_timeout("mongodb://h/db?replicaSet=rs0") == "mongodb://h/db?replicaSet=rs0&serverSelectionTimeoutMS=5000"
    )
    assert with_timeout("mongodb://h:27017") == "mongodb://h:27017/?serverSelectionTimeoutMS=5000"
    assert with_timeout("mongodb://h/db?serverSelectionTimeoutMS=100") == "mongodb://h/db?serverSelectionTimeoutMS=100"


def test_status_table_shows_every_part_and_the_unreachable_ones(capsys: pytest.CaptureFixture[str]) -> None:
    print_status(
        {
            "kafka": {
                "topic": "req",
                "group": "g",
                "group_state": "Stable",
                "members": 2,
                "total_lag": 7,
                "partitions": [
                    {"partition": 0, "committed": 3, "end": 10, "lag": 7},
                    {"partition": 1, "committed": None, "end": 0, "lag": 0},
                ],
            },
            "sagas": {"in_flight": 1, "window_s": 3600, "by_status": {"created": 5, "failed": 1}},
            "outbox": {"backlog": 2, "oldest_age_s": 12.5, "oldest_created_at": "2026-01-01T00:00:00.000Z"},
            "relay": {"error": "MongoDB (PAYLINK_MONGODB_URI) did not answer: ServerSelectionTimeoutError"},
        }
    )
    out = capsys.readouterr().out
    assert "group g (Stable, 2 member(s))" in out and "total lag 7" in out
    assert "in flight (running): 1" in out and "created 5, failed 1" in out
    assert "backlog 2, oldest 12.5 s old" in out
    assert "RELAY\n  MongoDB (PAYLINK_MONGODB_URI) did not answer" in out
