"""The JSON log lines of one request, as the worker writes them (``logs.configure`` with the JSON formatter):
every line carries the request's ids and its ``trace_id``; failure lines carry the failure's message."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from consumer.runtime import logs
from tests.fakes.world import ACCOUNT, REQUEST_ID, World, request_document
from tests.unit.test_tracing import TRACE_ID, TRACEPARENT, DeadLetters, Message

NO_EMAIL_CONTACT = "64b7f0c2a1b2c3d4e5f60719"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("INFO", "json")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def handle(world: World, raw: bytes, attempts: int = 2) -> None:
    handler = RequestHandler(world.saga(), DeadLetters(), RetryPolicy(attempts=attempts, initial_s=0.001, max_s=0.001))
    headers = (("traceparent", TRACEPARENT.encode()),)
    await handler.handle(handler.prepare(Message("requests", 0, 7, b"k", raw, headers)))


def assert_about_the_request(found: list[dict[str, Any]]) -> None:
    assert found, "the request logged nothing"
    for line in found:
        assert line["payment_link_id"] == REQUEST_ID, line
        assert line["event_id"] == REQUEST_ID, line
        assert line["correlation_id"] == "corr-1", line
        assert line["account_id"] == ACCOUNT, line
        assert line["trace_id"] == TRACE_ID, line


async def test_a_created_request_logs_its_ids_and_trace_on_every_line(captured: io.StringIO) -> None:
    world = World()
    await handle(world, json.dumps(request_document()).encode())

    found = lines(captured)
    assert "payment link created" in [line["message"] for line in found]
    assert_about_the_request(found)


async def test_a_failed_request_logs_the_failure_message(captured: io.StringIO) -> None:
    world = World()
    world.crm.add_contact(ACCOUNT, NO_EMAIL_CONTACT, name="No Mail", email=None, phone=None)
    await handle(world, json.dumps(request_document(contact_id=NO_EMAIL_CONTACT)).encode())

    found = lines(captured)
    assert_about_the_request(found)
    by_message = {line["message"]: line for line in found}
    failed = by_message["payment link failed"]
    assert failed["reason"] == "contact_missing_email"
    assert "email" in failed["error"].lower()
    permanently = by_message["saga failed permanently"]
    assert permanently["correlation_id"] == "corr-1" and "email" in permanently["error"].lower()


async def test_a_rejected_request_logs_its_event_id(captured: io.StringIO) -> None:
    raw = json.dumps(request_document(currency="not-a-currency")).encode()
    await handle(World(), raw)

    (rejected,) = [line for line in lines(captured) if line["message"] == "request rejected"]
    assert rejected["event_id"] == REQUEST_ID
    assert rejected["correlation_id"] == "corr-1"
    assert rejected["trace_id"] == TRACE_ID
