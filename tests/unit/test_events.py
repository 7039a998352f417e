"""Request validation, its reasons and messages; the result events and their JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from domain.errors import PermanentError, Reason
from domain.events import (
    PaymentLinkCreated,
    PaymentLinkFailed,
    PaymentLinkRequested,
    PriceLineItem,
    event_json_schemas,
)
from domain.intake import (
    due_timestamp,
    failure_for_unparseable,
    parse_request,
    recover_identity,
    resolve_due_date,
)
from tests.fakes.world import REQUEST_ID, request_document

NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)


def parse(**overrides: Any) -> PaymentLinkRequested:
    return parse_request(json.dumps(request_document(**overrides)).encode())


def rejection(raw: bytes | None = None, **overrides: Any) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        parse_request(raw if raw is not None else json.dumps(request_document(**overrides)).encode())
    return caught.value


def test_a_valid_request_parses_with_defaults() -> None:
    request = parse()
    assert request.event_id == REQUEST_ID
    assert request.line_items[0] == PriceLineItem(price_id="price_basic", quantity=2)
    assert request.line_items[1].quantity == 1
    assert request.metadata == {"deal": "D-42"}


def test_event_id_is_normalised_to_canonical_uuid() -> None:
    assert parse(event_id=REQUEST_ID.upper()).event_id == REQUEST_ID


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe not utf-8", "JSON"),
        (b"{not json", "JSON"),
        (b"[]", "object"),
        (b'"just a string"', "object"),
        (b"[" * 100_000, "recursion limit"),
    ],
)
def test_undecodable_messages_are_invalid_events(raw: bytes, fragment: str) -> None:
    error = rejection(raw)
    assert error.reason is Reason.INVALID_EVENT
    assert fragment in error.message


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_type": "PaymentLinkCreated"}, "event_type"),
        ({"schema_version": 2}, "schema_version"),
        ({"occurred_at": "2030-01-15T09:00:00"}, "occurred_at"),
        ({"account_id": ""}, "account_id"),
        ({"contact_id": 42}, "contact_id"),
        ({"currency": "xyz"}, "currency"),
        ({"currency": "dollars"}, "currency"),
        ({"description": "x" * 501}, "description"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "at most 20 keys"),
        ({"metadata": {"k" * 41: "v"}}, "1..40 characters"),
        ({"metadata": {"a[b]": "v"}}, "square brackets"),
        ({"metadata": {"k": "v" * 501}}, "at most 500 characters"),
        ({"metadata": {"account_id": "spoof"}}, "reserved"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"surprise": True}, "surprise"),
        ({"line_items": None}, "line_items"),
    ],
)
def test_envelope_problems_are_invalid_events_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    error = rejection(**overrides)
    assert error.reason is Reason.INVALID_EVENT
    assert field in error.message


@pytest.mark.parametrize(
    ("line_items", "fragment"),
    [
        ([], "at least 1"),
        ([{"price_id": "p"}] * 251, "at most 250"),
        ([{"price_id": "p", "amount": 100, "description": "x"}], "not both"),
        ([{"quantity": 2}], "not neither"),
        ([{"price_id": "p", "quantity": 0}], "line_items.0.quantity"),
        ([{"price_id": "p", "quantity": 10_001}], "less than or equal to 10000"),
        ([{"description": "x", "amount": 0}], "line_items.0.amount"),
        ([{"description": "x", "amount": -5}], "greater than 0"),
        ([{"description": "x", "amount": "5"}], "valid integer"),
        ([{"description": "", "amount": 5}], "line_items.0.description"),
        ([{"description": "x", "amount": 50_000_000, "quantity": 2}], "99999999"),
        ([{"price_id": "has space"}], "price_id"),
        ("not a list", "line_items"),
        ([7], "line_items.0"),
    ],
)
def test_line_item_problems_are_invalid_line_items(line_items: Any, fragment: str) -> None:
    error = rejection(line_items=line_items)
    assert error.reason is Reason.INVALID_LINE_ITEMS
    assert fragment in error.message


@pytest.mark.parametrize(
    "overrides",
    [
        {"days_until_due": None},
        {"due_date": "2030-02-01"},
        {"days_until_due": 0},
        {"days_until_due": 366},
        {"days_until_due": None, "due_date": "2030-02-30"},
        {"days_until_due": None, "due_date": "2030-02-01T00:00:00Z"},
    ],
)
def test_due_date_problems_are_invalid_due_date(overrides: dict[str, Any]) -> None:
    assert rejection(**overrides).reason is Reason.INVALID_DUE_DATE


def test_the_most_fundamental_problem_wins() -> None:
    error = rejection(account_id=None, line_items=[], days_until_due=0)
    assert error.reason is Reason.INVALID_EVENT
    assert "account_id" in error.message and "line_items" in error.message


def test_messages_never_echo_huge_inputs() -> None:
    huge = "x" * 100_000
    error = rejection(account_id=huge, metadata={huge: huge}, line_items=[{"price_id": huge}] * 300)
    assert len(error.message) <= 1000
    assert "x" * 100 not in error.message


def test_many_problems_are_summarised() -> None:
    error = rejection(line_items=[{"price_id": "p", "quantity": 0}] * 10)
    assert "and 5 more problem(s)" in error.message


def test_resolve_due_date_from_days_and_explicit_dates() -> None:
    assert resolve_due_date(parse(days_until_due=14), NOW) == date(2030, 1, 29)
    explicit = parse(days_until_due=None, due_date="2030-01-16")
    assert resolve_due_date(explicit, NOW) == date(2030, 1, 16)


@pytest.mark.parametrize(("due", "fragment"), [("2030-01-15", "after today"), ("2035-06-01", "at most")])
def test_resolve_due_date_rejects_today_the_past_and_far_future(due: str, fragment: str) -> None:
    with pytest.raises(PermanentError) as caught:
        resolve_due_date(parse(days_until_due=None, due_date=due), NOW)
    assert caught.value.reason is Reason.INVALID_DUE_DATE
    assert fragment in caught.value.message


def test_due_timestamp_is_noon_utc() -> None:
    assert datetime.fromtimestamp(due_timestamp(date(2030, 1, 29)), UTC) == datetime(2030, 1, 29, 12, tzinfo=UTC)


def test_recover_identity_keeps_a_non_uuid_event_id_as_is() -> None:
    identity = recover_identity(b'{"event_id": "req-17", "line_items": []}')
    assert identity is not None and identity.event_id == "req-17"


def test_recover_identity_from_a_bad_message() -> None:
    raw = json.dumps({"event_id": REQUEST_ID.upper(), "account_id": "a", "contact_id": 5, "line_items": 3})
    identity = recover_identity(raw.encode())
    assert identity is not None
    assert (identity.event_id, identity.account_id, identity.contact_id) == (REQUEST_ID, "a", None)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"garbage",
        b"[1]",
        b'{"event_id": 5}',
        b'{"event_id": ""}',
        json.dumps({"event_id": "e" * 201}).encode(),
    ],
)
def test_recover_identity_gives_up_without_a_usable_event_id(raw: bytes) -> None:
    assert recover_identity(raw) is None


def test_failure_for_unparseable_is_deterministic() -> None:
    raw = json.dumps({**request_document(), "line_items": []}).encode()
    error = rejection(raw)
    first = failure_for_unparseable(raw, error, NOW)
    again = failure_for_unparseable(raw, error, NOW)
    assert first is not None and again is not None
    assert first.event_id == again.event_id != REQUEST_ID
    assert (first.payment_link_id, first.reason, first.failed_step) == (REQUEST_ID, "invalid_line_items", "validate")
    assert (first.retryable, first.compensated, first.attempt) == (False, False, 1)
    assert failure_for_unparseable(b"nope", error, NOW) is None


def test_json_schemas_describe_the_request_its_results_and_the_cancels_events() -> None:
    schemas = event_json_schemas()
    assert set(schemas) == {
        "PaymentLinkRequested",
        "PaymentLinkCreated",
        "PaymentLinkFailed",
        "PaymentLinkCancelRequested",
        "PaymentLinkCancelRejected",
    }
    cancel = schemas["PaymentLinkCancelRequested"]
    assert cancel["additionalProperties"] is False
    assert {"event_id", "account_id", "contact_id", "payment_link_id"} <= set(cancel["required"])
    assert "already_paid" in json.dumps(schemas["PaymentLinkCancelRejected"])
    requested = schemas["PaymentLinkRequested"]
    assert requested["additionalProperties"] is False
    assert {"event_id", "account_id", "contact_id", "currency", "line_items"} <= set(requested["required"])
    failed = schemas["PaymentLinkFailed"]
    assert "internal_error" in json.dumps(failed)
    json.dumps(schemas)  # serialisable as is


def test_result_events_round_trip_through_json() -> None:
    created = PaymentLinkCreated(
        event_id="e1",
        occurred_at=NOW,
        payment_link_id=REQUEST_ID,
        account_id="a",
        contact_id="c",
        stripe_account="acct_1",
        customer_id="cus_1",
        invoice_id="in_1",
        invoice_number="INV-1",
        status="open",
        amount_due=100,
        currency="usd",
        due_date=date(2030, 1, 29),
        hosted_invoice_url="https://h",
        invoice_pdf=None,
        short_url=None,
        url="https://h",
    )
    payload = json.loads(created.model_dump_json())
    assert payload["event_type"] == "PaymentLinkCreated" and payload["due_date"] == "2030-01-29"
    assert PaymentLinkCreated.model_validate_json(created.model_dump_json()) == created
    failed = PaymentLinkFailed.model_validate({**_failed_payload(), "new_field_from_the_future": 1})
    assert failed.reason is Reason.CONTACT_NOT_FOUND


def _failed_payload() -> dict[str, Any]:
    return {
        "event_id": "e2",
        "event_type": "PaymentLinkFailed",
        "schema_version": 1,
        "occurred_at": "2030-01-15T09:30:00Z",
        "payment_link_id": REQUEST_ID,
        "account_id": "a",
        "contact_id": "c",
        "reason": "contact_not_found",
        "message": "m",
        "retryable": False,
        "failed_step": "customer",
        "compensated": False,
        "attempt": 1,
    }
