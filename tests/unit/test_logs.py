"""Logging: JSON lines carrying the extra fields, and no secret in any part of a record — message, args,
extra fields or traceback — whether it is a configured secret or merely shaped like one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from consumer.runtime import logs

SECRET_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
TOKEN = "tok-9f8e7d6c5b4a"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("INFO", "json", secrets=[TOKEN, "abc"])
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_outcome_fields_become_json_keys(captured: io.StringIO) -> None:
    logging.getLogger("paylink.processing").info(
        "payment link created", extra={"payment_link_id": "p-1", "correlation_id": "c-1", "account_id": "a-1"}
    )
    (line,) = lines(captured)
    assert line["message"] == "payment link created" and line["level"] == "info"
    assert (line["payment_link_id"], line["correlation_id"], line["account_id"]) == ("p-1", "c-1", "a-1")


def test_secrets_are_masked_everywhere(captured: io.StringIO) -> None:
    log = logging.getLogger("paylink.test")
    log.warning("key %s and %s", SECRET_KEY, TOKEN, extra={"error": f"Authorization: Bearer {TOKEN}x"})
    log.info("restricted rk_test_51Habc and header Bearer eyJhbGciOi.payload.sig")
    try:
        raise RuntimeError(f"Stripe said: Invalid API Key provided: {SECRET_KEY}")
    except RuntimeError:
        log.exception("request failed", extra={"detail": {"nested": "only strings are scanned"}})
    text = captured.getvalue()
    assert SECRET_KEY not in text and TOKEN not in text
    assert "rk_test_51Habc" not in text and "eyJhbGciOi" not in text
    assert text.count(logs.MASK) >= 5
    assert "Bearer [redacted]" in text
    exception = lines(captured)[-1]["exception"]
    assert isinstance(exception, str) and "RuntimeError" in exception and SECRET_KEY not in exception


def test_short_configured_values_are_not_treated_as_secrets(captured: io.StringIO) -> None:
    logging.getLogger("paylink.test").info("abc is a common word")  # "abc" is shorter than 4 characters
    assert lines(captured)[0]["message"] == "abc is a common word"


def test_text_format_for_terminals_keeps_the_fields() -> None:
    record = logging.makeLogRecord(
        {"msg": "saga failed", "levelname": "INFO", "name": "paylink.saga", "payment_link_id": "p-9"}
    )
    assert "payment_link_id=p-9" in logs.TextFormatter().format(record)


def test_chatty_libraries_stay_quiet(captured: io.StringIO) -> None:
    logging.getLogger("stripe").info("message='Request to Stripe api' url=/v1/customers/search?query=email:x@y")
    logging.getLogger("httpx").info("HTTP Request: POST /shorten")
    assert captured.getvalue() == ""
