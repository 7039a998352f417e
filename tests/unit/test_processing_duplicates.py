"""The worker's per-message handling, on the fakes: a request delivered twice is one saga outcome in
``paylink_sagas_total`` and one re-report in ``paylink_duplicates_total``, with nothing new published."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from consumer import metrics as paylink_metrics
from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from tests.fakes.world import REQUEST_ID, World, request_document


@dataclass
class Message:
    """The fields of an aiokafka ``ConsumerRecord`` that the handler reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class DeadLetters:
    records: list[dict[str, Any]] = field(default_factory=list)

    async def record(self, **fields: Any) -> str:
        self.records.append(fields)
        return f"{fields['topic']}:{fields['partition']}:{fields['offset']}"


def counted(name: str, **labels: str) -> float:
    """The process-wide counter's value (other tests share the registry: compare before and after)."""
    return paylink_metrics.registry_of(paylink_metrics.ALL).get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("overrides", "outcome", "reason"),
    [({}, "created", ""), ({"contact_id": "nobody"}, "failed", "contact_not_found")],
    ids=["created", "failed"],
)
async def test_a_request_delivered_twice_counts_one_saga_and_one_duplicate(
    overrides: dict[str, Any], outcome: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    world, dead_letters = World(), DeadLetters()
    handler = RequestHandler(world.saga(), dead_letters, RetryPolicy(attempts=2, initial_s=0.001, max_s=0.001))
    raw = json.dumps(request_document(**overrides)).encode()
    sagas_before = counted("paylink_sagas_total", outcome=outcome, reason=reason)
    duplicates_before = counted("paylink_duplicates_total", outcome=outcome)

    with caplog.at_level(logging.INFO, logger="paylink.processing"):
        for offset in (0, 1):  # the same request, redelivered (or re-sent by its producer)
            await handler.handle(handler.prepare(Message("requests", 0, offset, b"contact", raw)))

    assert counted("paylink_sagas_total", outcome=outcome, reason=reason) - sagas_before == 1
    assert counted("paylink_duplicates_total", outcome=outcome) - duplicates_before == 1
    reports = [r for r in caplog.records if r.name == "paylink.processing"]
    assert [r.getMessage() for r in reports] == [f"payment link {outcome}", "duplicate request; result re-reported"]
    assert getattr(reports[1], "payment_link_id", None) == REQUEST_ID
    assert len(world.outbox.ordered) == 1 and dead_letters.records == []
    assert world.billing.created["invoice"] == (1 if outcome == "created" else 0)
