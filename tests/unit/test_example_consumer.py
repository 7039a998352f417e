"""examples/consumer.py's rules without Kafka: dedupe on event_id, the highest attempt wins per link,
every type of the results topic handled (an unknown one skipped)."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

from paylink.client import RESULT_TYPES, parse_event
from tests.e2e.processes import ROOT


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_consumer", ROOT / "examples" / "consumer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def failed(event_id: str, attempt: int, retryable: bool) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "PaymentLinkFailed",
        "occurred_at": "2026-03-02T09:16:41Z",
        "payment_link_id": "link-1",
        "account_id": "acc",
        "contact_id": "con",
        "reason": "stripe_unavailable" if retryable else "contact_not_found",
        "message": "m",
        "retryable": retryable,
        "failed_step": "customer",
        "compensated": False,
        "attempt": attempt,
    }


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def test_duplicates_are_ignored_and_a_late_lower_attempt_does_not_win() -> None:
    links = example().Links()
    second = parse_event(encoded(failed("e2", 2, retryable=False)))
    first = parse_event(encoded(failed("e1", 1, retryable=True)))
    assert links.handle(second) == "link-1 failed attempt=2 reason=contact_not_found final"
    assert links.handle(second) == "link-1 duplicate e2 ignored"
    assert links.handle(first) == "link-1 stale attempt=1 ignored (current attempt=2)"
    assert links.states["link-1"].startswith("failed attempt=2")


def test_every_type_of_the_results_topic_has_a_reading() -> None:
    module = example()
    source = (ROOT / "examples" / "consumer.py").read_text()
    assert all(f"case {name}(" in source for name in RESULT_TYPES), "a type the example does not handle"
    unknown = parse_event(encoded({"event_id": "e9", "event_type": "PaymentLinkRefunded"}))
    assert module.describe(unknown) == "skipped unknown type PaymentLinkRefunded"
