"""Validation is identical at every door: the same generated events go to the published JSON Schema (a
standard validator), to `paylink publish --dry-run` (through the CLI's entry point, in this process) and
to the worker's intake (``parse_message``, then the saga's due-date rule). `publish` and the worker must
always agree, on the verdict and on the reason; the schema must agree wherever it can express the rule
(a clock, a product of two fields and a calendar check of occurred_at are beyond it: see
``domain.request_schema``)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import string
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from consumer.cli.main import main
from domain.errors import PermanentError
from domain.events import PaymentLinkRequested, event_json_schemas
from domain.intake import parse_message, resolve_due_date

SCHEMA = Draft202012Validator(
    event_json_schemas()["PaymentLinkRequested"], format_checker=Draft202012Validator.FORMAT_CHECKER
)
Event = dict[str, Any]


def today_plus(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


def valid() -> Event:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:15:02Z",
        "correlation_id": "crm-1",
        "account_id": "acc-1",
        "contact_id": "con-1",
        "currency": "eur",
        "days_until_due": 14,
        "line_items": [{"description": "Consulting", "amount": 12000, "quantity": 2}],
        "metadata": {"deal": "D-1"},
    }


@dataclass(frozen=True)
class Change:
    name: str
    apply: Callable[[Event], None]
    expressible: bool = True  # can the JSON Schema state the rule this change may break?


def setting(field: str, value: object, expressible: bool = True) -> Change:
    return Change(f"{field}={value!r:.40}", lambda e: e.__setitem__(field, copy.deepcopy(value)), expressible)


def removing(field: str) -> Change:
    return Change(f"-{field}", lambda e: e.pop(field, None))


def item(value: dict[str, Any], expressible: bool = True) -> Change:
    return Change(f"item {value!r:.40}", lambda e: e.__setitem__("line_items", [copy.deepcopy(value)]), expressible)


def due_date(days: int, expressible: bool) -> Change:
    def apply(event: Event) -> None:
        event.pop("days_until_due", None)
        event["due_date"] = today_plus(days)

    return Change(f"due in {days}d", apply, expressible)


def due_text(text: str) -> Change:
    def apply(event: Event) -> None:
        event.pop("days_until_due", None)
        event["due_date"] = text

    return Change(f"due {text}", apply)


CHANGES = [
    *(removing(f) for f in ("event_id", "occurred_at", "account_id", "contact_id", "currency", "line_items")),
    removing("days_until_due"),  # neither due rule
    setting("due_date", "2031-01-01"),  # both due rules (when days_until_due is still there)
    setting("due_date", None),
    setting("days_until_due", None),
    setting("days_until_due", 0),
    setting("days_until_due", 366),
    setting("days_until_due", 365),
    setting("days_until_due", "3"),
    due_date(2, expressible=False),  # valid: after today
    due_date(0, expressible=False),  # today: refused, by a clock
    due_date(-3, expressible=False),
    due_date(5 * 365 + 3, expressible=False),  # too far ahead
    due_text("2031/01/01"),
    due_text("2031-02-30"),  # not a date: the schema's format checker knows it
    setting("days_untill_due", 3),  # an unknown field
    setting("event_id", "not-a-uuid"),
    setting("event_id", "{" + str(uuid.uuid4()) + "}"),
    setting("event_id", uuid.uuid4().hex),
    setting("event_id", str(uuid.uuid4()).upper()),
    setting("event_type", "PaymentLinkCreated"),
    setting("schema_version", 2),
    setting("occurred_at", "2026-03-02T09:15:02"),  # no offset
    setting("occurred_at", "2026-03-02T09:15:02.123+02:00"),
    setting("occurred_at", "yesterday"),
    setting("occurred_at", "2026-13-02T09:15:02Z", expressible=False),  # a calendar check
    setting("account_id", ""),
    setting("contact_id", "c" * 201),
    setting("correlation_id", None),
    setting("correlation_id", ""),
    setting("note_id", "note-1"),
    setting("description", "d" * 501),
    setting("description", ""),
    setting("line_items", []),
    setting("line_items", [{"price_id": "price_1"}] * 251),
    item({"price_id": "price_1", "quantity": 3}),
    item({"price_id": "price 1"}),
    item({"price_id": "price_1", "description": "both"}),
    item({"quantity": 2}),
    item({"amount": 100}),
    item({"description": "x", "amount": 0}),
    item({"description": "x", "amount": 100, "quantity": 0}),
    item({"description": "x", "amount": 100, "quantity": 10_001}),
    item({"description": "x", "amount": 100_000_000}),
    item({"description": "x", "amount": 99_999_999, "quantity": 2}, expressible=False),  # a product
    setting("metadata", {f"k{i}": "v" for i in range(21)}),
    setting("metadata", {"a[b]": "v"}),
    setting("metadata", {"payment_link_id": "spoof"}),
    setting("metadata", {"": "v"}),
    setting("metadata", {"k" * 41: "v"}),
    setting("metadata", {"k": "v" * 501}),
    setting("metadata", {"k": 3}),
]
CURRENCIES = st.one_of(
    st.text(alphabet=string.ascii_letters, min_size=3, max_size=3),
    st.sampled_from(["EUR", "Eur", "usd", "xxx", "xts", "eu", "euro", "€ur", "eur ", "K" + "\u212a" + "d"]),
)


def schema_accepts(event: Event) -> bool:
    return bool(SCHEMA.is_valid(event))


def worker_verdict(raw: bytes) -> str:
    """``ok`` or the reason the worker ends the request with (intake, then the saga's first step)."""
    try:
        request = parse_message(raw)
        assert isinstance(request, PaymentLinkRequested), "no generated event is a cancel"
        resolve_due_date(request, datetime.now(UTC))
    except PermanentError as error:
        return str(error.reason)
    return "ok"


def publish_verdict(raw: bytes) -> str:
    """``ok`` or the reason ``paylink publish --file - --dry-run`` refuses with (exit 2)."""
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(raw))
    # The command's logging setup is global (handlers, secret filter): left in place, it would change how
    # later tests in this process see log records.
    quiet = mock.patch("consumer.cli.main.quiet_logging")
    with (
        mock.patch.object(sys, "stdin", stdin),
        quiet,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(["publish", "--file", "-", "--dry-run"])
    if code == 0:
        return "ok"
    assert code == 2 and "not sent: " in err.getvalue(), err.getvalue()
    return err.getvalue().split("not sent: ", 1)[1].split(":", 1)[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.sampled_from(CHANGES), max_size=3), currency=st.one_of(st.none(), CURRENCIES))
def test_every_door_gives_the_same_verdict(changes: list[Change], currency: str | None) -> None:
    event = valid()
    for change in changes:
        change.apply(event)
    if currency is not None:
        event["currency"] = currency
    raw = json.dumps(event).encode()
    worker, publish = worker_verdict(raw), publish_verdict(raw)
    assert publish == worker, (changes, event)
    if all(change.expressible for change in changes):
        assert schema_accepts(event) == (worker == "ok"), ([c.name for c in changes], event, worker)


def test_the_doors_are_not_all_lenient() -> None:
    """The property above must be able to fail: these events are refused by all three doors."""
    both = {**valid(), "due_date": today_plus(10)}
    neither = {k: v for k, v in valid().items() if k != "days_until_due"}
    past = {**neither, "due_date": today_plus(-1)}
    for event in (both, neither):
        raw = json.dumps(event).encode()
        assert (schema_accepts(event), worker_verdict(raw), publish_verdict(raw)) == (
            False,
            "invalid_due_date",
            "invalid_due_date",
        )
    raw = json.dumps(past).encode()
    assert (worker_verdict(raw), publish_verdict(raw)) == ("invalid_due_date", "invalid_due_date")
    upper = json.dumps({**valid(), "currency": "EUR"}).encode()
    assert (worker_verdict(upper), publish_verdict(upper)) == ("ok", "ok")
