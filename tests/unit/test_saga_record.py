"""The saga record's dict form: plain JSON/BSON-friendly values, and a lossless round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import PermanentError, Reason
from domain.events import PaymentLinkFailed
from domain.saga_record import SagaRecord, SagaStatus
from tests.fakes.faults import SimulatedCrash
from tests.fakes.world import REQUEST_ID, World, make_request

PLAIN = (str, int, bool, type(None))


def assert_plain(value: Any, path: str = "record") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), path
            assert_plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_plain(item, f"{path}[{index}]")
    else:
        assert isinstance(value, PLAIN), f"{path} is {type(value).__name__}"


async def test_a_finished_record_is_plain_data_and_round_trips() -> None:
    world = World()
    await world.saga().run(make_request())
    document = world.store.documents[REQUEST_ID]
    assert_plain(document)
    assert json.loads(json.dumps(document)) == document
    record = SagaRecord.from_document({**document, "_id": "ignored"})
    assert record.to_document() == document
    assert record.status is SagaStatus.CREATED and record.request_event() == make_request()
    assert document["due_date"] == "2030-01-29"
    assert document["result"]["event_type"] == "PaymentLinkCreated"
    assert set(document) >= {
        "payment_link_id", "request", "account_id", "contact_id", "status", "version", "attempt", "restarts",
        "due_date", "stripe_account", "description", "customer_id", "invoice_id", "items_added", "invoice",
        "shortened", "short_url", "failure", "result", "created_at", "updated_at",
    }  # fmt: skip


async def test_a_failed_record_keeps_the_failure() -> None:
    world = World()
    await world.saga().run(make_request(line_items=[{"price_id": "price_missing"}]))
    document = world.store.documents[REQUEST_ID]
    assert_plain(document)
    assert document["failure"] == {
        "reason": "price_not_found",
        "message": document["failure"]["message"],
        "retryable": False,
        "failed_step": "items",
        "compensated": True,
        "compensation_error": None,
    }
    assert SagaRecord.from_document(document).result == world.outbox.ordered[0]


def test_timestamps_are_fixed_width_utc_strings_that_sort() -> None:
    request = make_request()
    early = SagaRecord.start(request, datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)).to_document()
    late = SagaRecord.start(request, datetime(2030, 1, 1, 0, 0, 0, 500, tzinfo=UTC)).to_document()
    assert early["created_at"] == "2030-01-01T00:00:00.000000Z"
    assert early["created_at"] < late["created_at"]
    assert SagaRecord.from_document(late).created_at == datetime(2030, 1, 1, 0, 0, 0, 500, tzinfo=UTC)


# --- migration: documents stored before the compensating status ------------------------------------------

OLD_REQUEST = {
    "event_id": REQUEST_ID, "event_type": "PaymentLinkRequested", "schema_version": 1,
    "occurred_at": "2030-01-15T09:00:00Z", "correlation_id": "corr-1", "account_id": "acc_1",
    "contact_id": "64b7f0c2a1b2c3d4e5f60718", "currency": "usd", "due_date": None, "days_until_due": 14,
    "description": None, "line_items": [{"price_id": "price_basic", "quantity": 1}], "note_id": None, "metadata": {},
}  # fmt: skip
OLD_FAILURE = {
    "reason": "price_not_found", "message": "No such price: price_basic", "retryable": False,
    "failed_step": "items", "compensated": False, "compensation_error": None,
}  # fmt: skip
OLD_RUNNING_WITH_FAILURE = {
    "payment_link_id": REQUEST_ID, "request": OLD_REQUEST, "account_id": "acc_1",
    "contact_id": "64b7f0c2a1b2c3d4e5f60718", "status": "running", "version": 4, "attempt": 1, "restarts": 0,
    "due_date": "2030-01-29", "stripe_account": "acct_1", "description": "Payment requested from Ada Lovelace",
    "customer_id": "cus_000001", "invoice_id": "in_000002", "items_added": 0, "invoice": None,
    "shortened": False, "short_url": None,
    "failure": OLD_FAILURE,
    "result": None, "created_at": "2030-01-15T09:30:00.000000Z", "updated_at": "2030-01-15T09:30:00.000000Z",
}  # fmt: skip


def test_an_old_running_document_with_a_failure_loads_as_compensating() -> None:
    record = SagaRecord.from_document({**OLD_RUNNING_WITH_FAILURE, "_id": REQUEST_ID})
    assert record.status is SagaStatus.COMPENSATING and not record.is_terminal
    assert record.failure is not None and record.failure.reason == "price_not_found"
    empty_history = {"entries": [], "dropped": 0}  # a document from before the history loads with none
    assert record.to_document() == {**OLD_RUNNING_WITH_FAILURE, "status": "compensating", "history": empty_history}


@pytest.mark.parametrize(
    "document",
    [
        {**OLD_RUNNING_WITH_FAILURE, "failure": None, "invoice_id": None, "items_added": 0},
        {**OLD_RUNNING_WITH_FAILURE, "status": "compensation_failed"},
        {**OLD_RUNNING_WITH_FAILURE, "status": "failed", "failure": {**OLD_FAILURE, "compensated": True}},
    ],
    ids=["running", "compensation_failed", "failed"],
)  # fmt: skip
def test_every_other_old_document_loads_unchanged(document: dict[str, Any]) -> None:
    empty_history = {"entries": [], "dropped": 0}  # the one field added since: it loads empty
    assert SagaRecord.from_document(document).to_document() == {**document, "history": empty_history}


async def test_an_old_form_compensating_saga_finishes_its_compensation_on_the_next_run() -> None:
    world = World()
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    world.store.crash_at_save(2, persisted=True)  # the draft (with the customer), then the failure: crash after it
    with pytest.raises(SimulatedCrash):
        await world.saga().run(make_request())
    document = world.store.documents[REQUEST_ID]
    assert (document["status"], document["failure"]["compensated"]) == ("compensating", False)
    world.store.documents[REQUEST_ID] = {**document, "status": "running"}  # as the previous version stored it

    result = await world.saga().run(make_request())

    assert isinstance(result, PaymentLinkFailed) and result.compensated and result.reason == "price_not_found"
    assert world.store.documents[REQUEST_ID]["status"] == "failed"
    assert world.billing.unfinished_invoices() == []
