"""The AsyncAPI document: the committed copy is the generated one, an AsyncAPI 3.0 parser accepts it (and
rejects broken variants, so the check has teeth), every reference resolves, headers match what the relay
sends, and the examples are events the models accept."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from consumer.cli.asyncapi import RESULT_HEADERS, all_json_schemas, asyncapi_document, default_asyncapi_yaml, to_yaml
from consumer.cli.examples import EXAMPLES, LIFECYCLE, RESULTS
from consumer.cli.main import main
from consumer.runtime import relay
from consumer.runtime.settings import Settings
from domain.cancel_events import PaymentLinkCancelRejected
from domain.events import PaymentLinkCreated, PaymentLinkFailed, event_json_schemas
from domain.intake import parse_cancel, parse_request
from domain.lifecycle_events import LIFECYCLE_EVENT_TYPES, LifecycleEvent, Transition, lifecycle_event_id
from domain.stored import OutboxEntry

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "asyncapi.yaml"

with warnings.catch_warnings():  # the parser's models shadow a pydantic attribute; harmless
    warnings.simplefilter("ignore", UserWarning)
    from asyncapi3 import AsyncAPI3


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(Settings.model_construct())


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == default_asyncapi_yaml(), (
        "deploy/asyncapi.yaml is stale: `python -m consumer.cli schema --asyncapi > deploy/asyncapi.yaml`"
    )


def test_the_yaml_reads_back_as_the_document(document: dict[str, Any]) -> None:
    assert yaml.safe_load(COMMITTED.read_text()) == document


def test_an_asyncapi_3_parser_accepts_the_document_and_rejects_broken_ones(document: dict[str, Any]) -> None:
    parsed = AsyncAPI3.model_validate(yaml.safe_load(COMMITTED.read_text()))
    assert parsed.asyncapi == "3.0.0"
    assert set(parsed.channels or {}) == {"requests", "results"}
    breakages: list[Callable[[dict[str, Any]], object]] = [
        lambda d: d["operations"]["sendResults"].update(action="publish"),
        lambda d: d["channels"]["results"].update(adress="typo"),
        lambda d: d["components"]["messages"]["PaymentLinkCreated"]["bindings"]["kafka"].update(keys={}),
        lambda d: d["servers"]["kafka"].pop("protocol"),
    ]
    for breakage in breakages:
        broken = copy.deepcopy(document)
        breakage(broken)
        with pytest.raises(ValueError):
            AsyncAPI3.model_validate(broken)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
        return [r for item in node for r in refs(item)] if isinstance(node, list) else []

    found = refs(document)
    assert len(found) > 10
    for ref in found:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]


def test_messages_carry_the_relays_headers_and_the_contact_key(document: dict[str, Any]) -> None:
    entry = OutboxEntry("e-1", 1, "con-1", "PaymentLinkCreated", b"{}", datetime.now(UTC))
    assert tuple(name for name, _ in relay.headers_for(entry)) == RESULT_HEADERS
    messages = document["components"]["messages"]
    for name in RESULTS + LIFECYCLE:
        headers = messages[name]["headers"]
        assert tuple(headers["properties"]) == RESULT_HEADERS and headers["required"] == list(RESULT_HEADERS)
        assert headers["properties"]["ce_type"]["const"] == name
        assert headers["properties"]["ce_source"]["const"] == relay.CE_SOURCE
    for message in messages.values():
        assert "contact_id" in message["bindings"]["kafka"]["key"]["description"]
    assert "$defs" not in json.dumps(document), "JSON Schema $defs are lifted into components.schemas"


def test_examples_are_events_the_models_accept(document: dict[str, Any]) -> None:
    assert parse_request(json.dumps(EXAMPLES["PaymentLinkRequested"]).encode()).event_id
    created = PaymentLinkCreated.model_validate(EXAMPLES["PaymentLinkCreated"])
    failed = PaymentLinkFailed.model_validate(EXAMPLES["PaymentLinkFailed"])
    assert created.payment_link_id == EXAMPLES["PaymentLinkRequested"]["event_id"]
    assert json.loads(created.model_dump_json()) == EXAMPLES["PaymentLinkCreated"], "examples are as serialised"
    assert json.loads(failed.model_dump_json()) == EXAMPLES["PaymentLinkFailed"]
    cancel = parse_cancel(json.dumps(EXAMPLES["PaymentLinkCancelRequested"]).encode())
    rejected = PaymentLinkCancelRejected.model_validate(EXAMPLES["PaymentLinkCancelRejected"])
    assert json.loads(rejected.model_dump_json()) == EXAMPLES["PaymentLinkCancelRejected"]
    assert cancel.event_id == EXAMPLES["PaymentLinkVoided"]["cancel_request_id"], "the voided example is its success"
    assert cancel.payment_link_id == EXAMPLES["PaymentLinkVoided"]["payment_link_id"]
    for name, message in document["components"]["messages"].items():
        assert message["examples"][0]["payload"] == EXAMPLES[name]


def test_the_lifecycle_events_are_on_the_results_channel_with_summaries(document: dict[str, Any]) -> None:
    assert set(LIFECYCLE) == {kind.__name__ for kind in LIFECYCLE_EVENT_TYPES}
    channel = document["channels"]["results"]["messages"]
    assert set(channel) == set(RESULTS + LIFECYCLE)
    sent = [ref["$ref"].rsplit("/", 1)[1] for ref in document["operations"]["sendResults"]["messages"]]
    assert sent == list(RESULTS + LIFECYCLE)
    assert set(document["channels"]["requests"]["messages"]) == {"PaymentLinkRequested", "PaymentLinkCancelRequested"}
    received = [ref["$ref"].rsplit("/", 1)[1] for ref in document["operations"]["receiveRequests"]["messages"]]
    assert received == ["PaymentLinkRequested", "PaymentLinkCancelRequested"]
    for name in LIFECYCLE:
        message = document["components"]["messages"][name]
        assert message["summary"] and "\n" not in message["summary"]
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
        schema = document["components"]["schemas"][name]
        assert {"event_id", "payment_link_id", "contact_id", "stripe_account", "source"} <= set(schema["required"])
        assert message["examples"][0]["headers"]["ce_id"] == EXAMPLES[name]["event_id"]


def test_lifecycle_examples_are_events_the_models_accept_with_deterministic_ids() -> None:
    adapter: TypeAdapter[LifecycleEvent] = TypeAdapter(LifecycleEvent)
    for name in LIFECYCLE:
        event = adapter.validate_python(EXAMPLES[name])
        assert event.event_type == name
        assert json.loads(event.model_dump_json()) == EXAMPLES[name], "examples are as serialised"
    transitions = {
        "PaymentLinkPaid": Transition.PAID,
        "PaymentLinkOverdue": Transition.OVERDUE,
        "PaymentLinkUncollectible": Transition.UNCOLLECTIBLE,
        "PaymentLinkVoided": Transition.VOIDED,
    }
    for name, transition in transitions.items():
        example = EXAMPLES[name]
        assert example["event_id"] == lifecycle_event_id(example["payment_link_id"], transition), name
    # The example's link is the created example's; a failed payment is its own transition per occurrence.
    assert EXAMPLES["PaymentLinkPaid"]["invoice_id"] == EXAMPLES["PaymentLinkCreated"]["invoice_id"]
    failed = EXAMPLES["PaymentLinkPaymentFailed"]["event_id"]
    assert failed not in {EXAMPLES[name]["event_id"] for name in transitions}


def test_schema_command_prints_the_json_schemas_and_the_asyncapi_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == all_json_schemas()
    assert set(printed) == set(event_json_schemas()) | set(LIFECYCLE)
    assert main(["schema", "--asyncapi"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["asyncapi"] == "3.0.0"


@pytest.mark.parametrize(
    "value",
    [
        {"plain": "word", "yes": "no", "null": None, "on": True, "n": 1.5, "date": "2026-01-01", "num": "0012"},
        {"$ref": "#/a/b", "colon": "a: b", "hash": "a #b", "quote": 'say "hi"', "lines": "one\ntwo", "u": "ünï"},
        {"nested": [[1, [2, {}]], {"a": [], "b": {"c": [{"d": "e"}, "f"]}}], "empty": {}, "list": []},
        [{"a": 1, "b": 2}, "x", ["y", "z"]],
    ],
)
def test_the_yaml_writer_round_trips(value: Any) -> None:
    assert yaml.safe_load(to_yaml(value)) == value
