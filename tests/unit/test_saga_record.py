"""The saga record's dict form: plain JSON/BSON-friendly values, and a lossless round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from domain.saga_record import SagaRecord, SagaStatus
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
