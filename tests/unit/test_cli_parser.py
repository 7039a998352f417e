"""The `paylink` command line surface: help everywhere, documented exit codes, argument types, and
`publish --dry-run` validating flags into a request exactly as the worker would parse it."""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from consumer.cli.main import main
from consumer.cli.parser import build_parser
from consumer.cli.values import amount_item, duration, metadata_pair, moment, price_item
from domain.intake import parse_cancel, parse_request

COMMANDS = [
    [],
    ["worker"],
    ["relay"],
    ["webhooks"],
    ["reconcile"],
    ["topics"],
    ["topics", "create"],
    ["publish"],
    ["cancel"],
    ["replay"],
    ["dead-letters"],
    ["dead-letters", "list"],
    ["dead-letters", "show"],
    ["dead-letters", "purge"],
    ["status"],
    ["schema"],
]


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Commands configure the root logger; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "paylink")
def test_every_command_has_help_with_the_exit_codes(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: paylink {' '.join(command)}".rstrip() in text
    for line in ("0  success", "1  the command ran but something failed", "2  bad usage", "3  a dependency"):
        assert line in text


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["topics"],
        ["dead-letters", "show"],
        ["status", "--window", "soon"],
        ["replay", "--since", "yesterday-ish"],
        ["replay", "--reason", "bad"],
        ["replay", "--event-id", "e", "--stale-after", "-1"],
        ["replay", "--event-id", "e", "--stale-after", "15m"],
        ["publish", "--item", ":3"],
        ["replay"],
        ["replay", "--event-id", "e", "--account", "a"],
        ["replay", "--all", "--reason", "internal_error"],
        ["dead-letters", "purge"],
        ["dead-letters", "purge", "--all", "--account", "a"],
        ["publish"],
        ["publish", "--file", "x.json", "--account", "a"],
        ["publish", "--days-until-due", "3", "--due-date", "2030-01-01"],
    ],
)
def test_bad_usage_exits_2_before_touching_anything(argv: list[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == 2


def test_replay_takes_running_sagas_unsaved_for_15_minutes_as_abandoned_unless_told_otherwise() -> None:
    assert build_parser().parse_args(["replay", "--event-id", "e"]).stale_after == 900
    assert build_parser().parse_args(["replay", "--event-id", "e", "--stale-after", "1800"]).stale_after == 1800


def test_time_and_item_argument_types() -> None:
    assert duration("90s") == timedelta(seconds=90) and duration("7d") == timedelta(days=7)
    assert moment("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert moment("2026-03-01T10:30:00") == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert moment("2026-03-01T10:30:00+02:00") == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert abs(moment("2h") - (datetime.now(UTC) - timedelta(hours=2))) < timedelta(seconds=5)
    assert price_item("price_123") == {"price_id": "price_123", "quantity": 1}
    assert price_item("price_123:4") == {"price_id": "price_123", "quantity": 4}
    assert amount_item("Setup:5000") == {"description": "Setup", "amount": 5000, "quantity": 1}
    assert amount_item("Setup: phase 1:5000:2") == {"description": "Setup: phase 1", "amount": 5000, "quantity": 2}
    assert amount_item("Ratio 3:2:700") == {"description": "Ratio 3", "amount": 2, "quantity": 700}
    assert metadata_pair("deal=D=1") == ("deal", "D=1")
    for parse, text in [
        (duration, "2 hours"),
        (moment, "03/01/2026"),
        (price_item, "p:x"),
        (amount_item, "no amount"),
        (amount_item, ":5"),
        (metadata_pair, "novalue"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_publish_dry_run_builds_a_valid_request_from_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "publish",
            "--dry-run",
            "--account",
            "acc-1",
            "--contact",
            "con-1",
            "--currency",
            "EUR",
            "--due-date",
            (date.today() + timedelta(days=9)).isoformat(),
            "--item",
            "price_9:3",
            "--amount-item",
            "Travel: Berlin:4500",
            "--correlation-id",
            "c-1",
            "--note-id",
            "n-1",
            "--metadata",
            "deal=D-7",
            "--description",
            "Workshop",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    request = parse_request(out.strip().encode())
    assert (request.account_id, request.contact_id, request.currency) == ("acc-1", "con-1", "eur")
    assert [item.model_dump() for item in request.line_items] == [
        {"price_id": "price_9", "quantity": 3},
        {"description": "Travel: Berlin", "amount": 4500, "quantity": 1},
    ]
    assert (request.correlation_id, request.note_id, request.metadata) == ("c-1", "n-1", {"deal": "D-7"})


def test_publish_refuses_what_the_worker_would_reject(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        main(
            [
                "publish",
                "--dry-run",
                "--account",
                "a",
                "--contact",
                "c",
                "--currency",
                "eur",
                "--days-until-due",
                "400",
                "--amount-item",
                "x:5",
            ]
        )
        == 2
    )
    assert "invalid_due_date" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"event_id": "not-a-uuid"}))
    assert main(["publish", "--dry-run", "--file", str(broken)]) == 2
    assert "invalid_event" in capsys.readouterr().err
    assert main(["publish", "--dry-run", "--file", str(tmp_path / "missing.json")]) == 2


def test_the_parser_lists_every_command() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {
        "worker",
        "relay",
        "webhooks",
        "topics",
        "publish",
        "cancel",
        "replay",
        "reconcile",
        "dead-letters",
        "show",
        "status",
        "schema",
        "results",
    }


def test_cancel_dry_run_builds_a_valid_cancel_from_flags(capsys: pytest.CaptureFixture[str]) -> None:
    link = "7E1D2C3B-4A59-4867-9F8E-1D2C3B4A5968"
    argv = ["cancel", "--dry-run", "--payment-link-id", link, "--account", "acc-1", "--contact", "con-1"]

    assert main([*argv, "--reason", "wrong amount", "--correlation-id", "c-9"]) == 0

    cancel = parse_cancel(capsys.readouterr().out.strip().encode())
    assert (cancel.payment_link_id, cancel.account_id, cancel.contact_id) == (link.lower(), "acc-1", "con-1")
    assert (cancel.reason, cancel.correlation_id, cancel.event_type) == (
        "wrong amount",
        "c-9",
        "PaymentLinkCancelRequested",
    )


def test_cancel_refuses_what_the_worker_would_reject(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["cancel", "--dry-run", "--account", "acc-1", "--contact", "con-1"]

    assert main([*argv, "--payment-link-id", "not-a-uuid"]) == 2
    assert "invalid_event" in capsys.readouterr().err
    assert main([*argv, "--payment-link-id", str(uuid.uuid4()), "--reason", "x" * 501]) == 2
    assert "reason" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["cancel", "--account", "acc-1"])  # --payment-link-id is required
    assert usage.value.code == 2


def test_publish_refuses_a_due_date_that_is_not_after_today(capsys: pytest.CaptureFixture[str]) -> None:
    """The worker's clock rule at the CLI's door: `--due-date 2020-01-01` is refused, not sent (#15)."""
    flags = ["publish", "--dry-run", "--account", "a", "--contact", "c", "--currency", "EUR", "--amount-item", "x:5"]
    assert main([*flags, "--due-date", "2020-01-01"]) == 2
    err = capsys.readouterr().err
    assert "not sent: invalid_due_date: due_date 2020-01-01 must be after today" in err
    assert main([*flags, "--due-date", datetime.now(UTC).date().isoformat()]) == 2  # today (UTC)
    assert "invalid_due_date" in capsys.readouterr().err
