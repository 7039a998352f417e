"""A cancel on the requests topic: ``parse_message`` tells it from a request by ``event_type`` and
validates it as strictly; ``CancelRecord``'s transitions and JSON forms; the lifecycle record's cancel intent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.cancel_events import CancelRejection, PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.cancel_record import CancelRecord, CancelStatus
from domain.errors import PermanentError, Reason
from domain.events import PaymentLinkCreated, PaymentLinkRequested
from domain.intake import parse_cancel, parse_message
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, request_document

CANCEL_ID = "5d1c6a0e-2b7f-4c8e-9a31-0f4e2d6b8c17"
NOW = datetime(2030, 1, 15, 10, 0, tzinfo=UTC)


def cancel_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "event_id": CANCEL_ID,
        "event_type": "PaymentLinkCancelRequested",
        "schema_version": 1,
        "occurred_at": "2030-01-15T09:45:00+01:00",
        "correlation_id": "corr-c",
        "account_id": ACCOUNT,
        "payment_link_id": REQUEST_ID,
        "contact_id": CONTACT,
        "reason": "wrong amount",
    }
    for key, value in overrides.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


# --- parsing --------------------------------------------------------------------------------------------


def test_a_cancel_is_parsed_as_a_cancel_with_canonical_ids() -> None:
    cancel = parse_message(raw(cancel_document(event_id=CANCEL_ID.upper(), payment_link_id=REQUEST_ID.upper())))

    assert isinstance(cancel, PaymentLinkCancelRequested)
    assert (cancel.event_id, cancel.payment_link_id, cancel.reason) == (CANCEL_ID, REQUEST_ID, "wrong amount")
    assert parse_message(raw(cancel_document(reason=None, correlation_id=None))) == cancel.model_copy(
        update={"reason": None, "correlation_id": None}
    )


def test_a_request_is_still_a_request_even_when_it_mentions_the_cancel_type() -> None:
    request = parse_message(raw(request_document(description="see PaymentLinkCancelRequested \u00e9")))

    assert isinstance(request, PaymentLinkRequested)


def test_a_cancel_whose_type_is_written_with_json_escapes_is_a_cancel() -> None:
    escaped = raw(cancel_document()).replace(b"PaymentLinkCancelRequested", b"PaymentLinkCancel\\u0052equested")

    assert isinstance(parse_message(escaped), PaymentLinkCancelRequested)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"payment_link_id": "link-1"}, "payment_link_id: must be a UUID, got link-1"),
        ({"event_id": "e-1"}, "event_id: must be a UUID, got e-1"),
        ({"reason": "x" * 501}, "reason: String should have at most 500 characters"),
        ({"contact_id": ""}, "contact_id: String should have at least 1 character"),
        ({"account_id": "a" * 201}, "account_id: String should have at most 200 characters"),
        ({"schema_version": 2}, "schema_version: Input should be 1"),
        ({"schema_version": "1"}, "schema_version: Input should be 1"),
        ({"occurred_at": "2030-01-15T09:45:00"}, "occurred_at: Input should have timezone info"),
        ({"payment_link_id": None}, "payment_link_id: Field required"),
        ({"contact_id": None}, "contact_id: Field required"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_a_cancel_is_validated_as_strictly_as_a_request(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(PermanentError) as raised:
        parse_message(raw(cancel_document(**overrides)))

    assert raised.value.reason is Reason.INVALID_EVENT
    assert raised.value.message == f"invalid PaymentLinkCancelRequested: {problem}"


@pytest.mark.parametrize(("missing", "suffix"), [(5, ""), (6, "; and 1 more problem(s)")])
def test_problems_are_listed_five_at_most(missing: int, suffix: str) -> None:
    fields = ["event_id", "schema_version", "occurred_at", "account_id", "payment_link_id", "contact_id"]
    broken = cancel_document(**{name: None for name in fields[:missing]})

    with pytest.raises(PermanentError) as raised:
        parse_cancel(raw(broken))

    listed = "; ".join(f"{name}: Field required" for name in fields[:5])
    assert raised.value.message == f"invalid PaymentLinkCancelRequested: {listed}{suffix}"


def test_a_message_naming_the_cancel_type_that_is_no_json_is_an_invalid_request() -> None:
    with pytest.raises(PermanentError) as raised:
        parse_message(b'"PaymentLinkCancelRequested" and then garbage')

    assert raised.value.reason is Reason.INVALID_EVENT and "PaymentLinkRequested" in raised.value.message


@pytest.mark.parametrize("value", [b"\xff\xfe", b"[1]", b'{"event_type": "PaymentLinkArchived", "event_id": "x"}'])
def test_unknown_types_and_garbage_stay_invalid_requests(value: bytes) -> None:
    with pytest.raises(PermanentError) as raised:
        parse_message(value)

    assert raised.value.reason is Reason.INVALID_EVENT and "PaymentLinkRequested" in raised.value.message


# --- the record ----------------------------------------------------------------------------------------


def rejection(reason: CancelRejection, message: str, *, retryable: bool) -> PaymentLinkCancelRejected:
    return PaymentLinkCancelRejected(
        event_id="r-1",
        occurred_at=NOW,
        payment_link_id=REQUEST_ID,
        cancel_request_id=CANCEL_ID,
        account_id=ACCOUNT,
        contact_id=CONTACT,
        reason=reason,
        message=message,
        retryable=retryable,
        attempt=1,
    )


def test_the_record_refuses_transitions_out_of_order() -> None:
    record = CancelRecord.start(parse_cancel(raw(cancel_document())), NOW)
    rejected = rejection(CancelRejection.ALREADY_PAID, "paid", retryable=False)
    done = record.done(rejected, NOW)

    assert (done.status, done.has_result, done.replayable) == (CancelStatus.DONE, True, False)
    assert (record.has_result, record.replayable, record.account_id, record.contact_id) == (
        False,
        False,
        ACCOUNT,
        CONTACT,
    )
    refused = f"cancel {CANCEL_ID} is done, not running"
    with pytest.raises(ValueError, match=refused):
        done.voiding(NOW)
    with pytest.raises(ValueError, match=refused):
        done.done(rejected, NOW)
    with pytest.raises(ValueError, match=refused):
        done.gave_up(rejected, NOW)
    with pytest.raises(ValueError, match="not replayable"):
        done.reopened_for_replay(NOW)
    retryable = record.done(rejected.model_copy(update={"retryable": True}), NOW)
    later = NOW + timedelta(seconds=5)
    reopened = retryable.reopened_for_replay(later)
    assert retryable.replayable and (reopened.status, reopened.result, reopened.attempt) == (
        CancelStatus.RUNNING,
        None,
        2,
    )
    assert reopened.updated_at == later and record.voiding(later).updated_at == later


def test_the_record_keeps_json_forms_of_the_cancel_and_its_result() -> None:
    cancel = parse_cancel(raw(cancel_document()))
    record = CancelRecord.start(cancel, NOW)
    rejected = rejection(CancelRejection.STRIPE_UNAVAILABLE, "gave up", retryable=True)

    assert (
        record.request == cancel.model_dump(mode="json")
        and record.request["occurred_at"] == "2030-01-15T09:45:00+01:00"
    )
    assert record.done(rejected, NOW).result == rejected.model_dump(mode="json")
    assert record.gave_up(rejected, NOW).result == rejected.model_dump(mode="json")
    document = record.done(rejected, NOW).to_document()
    assert json.loads(json.dumps(document)) == document and document["updated_at"] == "2030-01-15T10:00:00.000000Z"


def test_a_cancels_intent_on_the_lifecycle_record_is_set_and_withdrawn_with_its_time() -> None:
    from consumer.cli.examples import EXAMPLES
    from domain.lifecycle import LifecycleRecord

    created = PaymentLinkCreated.model_validate(EXAMPLES["PaymentLinkCreated"])
    record = LifecycleRecord.for_link(created, NOW)
    later = NOW + timedelta(minutes=1)

    intended = record.with_cancel_intent(CANCEL_ID, later)
    withdrawn = intended.with_cancel_intent(None, later + timedelta(minutes=1))

    assert (record.cancel_request_id, record.due_date, record.invoice_id) == (
        None,
        created.due_date,
        created.invoice_id,
    )
    assert (intended.cancel_request_id, intended.updated_at, intended.created_at) == (CANCEL_ID, later, NOW)
    assert (withdrawn.cancel_request_id, withdrawn.updated_at) == (None, later + timedelta(minutes=1))
