"""``paylink schema``: the event contract for integrators, generated from the models that enforce it.

- the JSON Schemas of the three events (``domain.events.event_json_schemas``);
- an AsyncAPI 3.0 document of both topics: the request and result messages, their payload schemas,
  the CloudEvents-style Kafka headers of results and the record key (``contact_id``).
  ``deploy/asyncapi.yaml`` is this document for the default settings (a unit test keeps it equal);
- the table of every ``PAYLINK_*`` setting (``docs/operations.md`` holds a copy, checked the same way).

The YAML is written here (a few lines for dicts, lists and scalars) so the runtime needs no YAML
library; strings are double-quoted (JSON escapes) unless they are plainly safe words.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from pydantic import SecretStr

from consumer.runtime.settings import Settings
from domain.events import event_json_schemas

BINDING_VERSION = "0.5.0"
CE_SOURCE = "paylink"  # equals consumer.runtime.relay.CE_SOURCE (tested)
RESULT_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "content-type")

_REQUEST_ID = "4f9c2a77-0a55-4b8e-9a44-2a61f1c0b1d3"
EXAMPLES: dict[str, dict[str, Any]] = {
    "PaymentLinkRequested": {
        "event_id": _REQUEST_ID,
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:15:00Z",
        "correlation_id": "crm-req-8812",
        "account_id": "acc-1042",
        "contact_id": "665f1b2c9d3e4a0012ab34cd",
        "currency": "eur",
        "days_until_due": 14,
        "description": "Spring workshop",
        "note_id": "note-77",
        "metadata": {"deal": "D-2031"},
        "line_items": [
            {"price_id": "price_1PzWorkshop", "quantity": 2},
            {"description": "Travel costs", "amount": 4500, "quantity": 1},
        ],
    },
    "PaymentLinkCreated": {
        "event_id": "b1f0e6a2-3c1d-4e59-8f0a-6d2c9e7b5a10",
        "event_type": "PaymentLinkCreated",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:15:02.184000Z",
        "payment_link_id": _REQUEST_ID,
        "correlation_id": "crm-req-8812",
        "account_id": "acc-1042",
        "contact_id": "665f1b2c9d3e4a0012ab34cd",
        "stripe_account": "acct_1OxTenant1042",
        "customer_id": "cus_Q8aB1cD2eF3gH4",
        "invoice_id": "in_1PzA2bC3dE4fG5hI",
        "invoice_number": "8F3A9C1D-0001",
        "status": "open",
        "amount_due": 24500,
        "currency": "eur",
        "due_date": "2026-03-16",
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1OxTenant1042/test_YWNjdF8xT3hUZW5hbnQ",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1OxTenant1042/test_YWNjdF8xT3hUZW5hbnQ/pdf",
        "short_url": "https://sho.rt/aB3dE9",
        "url": "https://sho.rt/aB3dE9",
    },
    "PaymentLinkFailed": {
        "event_id": "0c7d5e1f-9b2a-4c3d-8e6f-1a2b3c4d5e6f",
        "event_type": "PaymentLinkFailed",
        "schema_version": 1,
        "occurred_at": "2026-03-02T09:16:41.007000Z",
        "payment_link_id": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
        "correlation_id": "crm-req-8813",
        "account_id": "acc-1042",
        "contact_id": "665f1b2c9d3e4a0012ab34cd",
        "reason": "price_not_found",
        "message": "line_items[1]: no such price 'price_1PzRetired' on the connected account",
        "retryable": False,
        "failed_step": "items",
        "compensated": True,
        "attempt": 1,
    },
}
_SUMMARIES = {
    "PaymentLinkRequested": "Send this contact a payment link.",
    "PaymentLinkCreated": "The invoice is finalised (not sent) and payable at url.",
    "PaymentLinkFailed": "The request ended without a payable invoice; see reason and message.",
}


def _lift(schema: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """Moves ``$defs`` into ``shared`` (components.schemas) and points the references there."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: "#/components/schemas/" + v.removeprefix("#/$defs/")
                if k == "$ref" and isinstance(v, str)
                else rewrite(v)
                for k, v in node.items()
            }
        return [rewrite(item) for item in node] if isinstance(node, list) else node

    for name, definition in schema.get("$defs", {}).items():
        lifted = rewrite(definition)
        if shared.setdefault(name, lifted) != lifted:
            raise ValueError(f"two events define {name} differently")
    return {k: rewrite(v) for k, v in schema.items() if k != "$defs"}


def _headers(event_type: str) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": list(RESULT_HEADERS),
        "properties": {
            "ce_id": {**text, "description": "CloudEvents id: the event's event_id (dedupe on it)"},
            "ce_type": {**text, "const": event_type},
            "ce_source": {**text, "const": CE_SOURCE},
            "ce_specversion": {**text, "const": "1.0"},
            "ce_time": {**text, "format": "date-time", "description": "when the result entered the outbox"},
            "content-type": {**text, "const": "application/json"},
        },
    }


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, schema in event_json_schemas().items():
        schemas[name] = _lift(schema, schemas)
        example = EXAMPLES[name]
        message: dict[str, Any] = {
            "name": name,
            "title": name,
            "summary": _SUMMARIES[name],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "the event's contact_id"},
                    "bindingVersion": BINDING_VERSION,
                }
            },
            "examples": [{"name": f"{name}Example", "payload": example}],
        }
        if name != "PaymentLinkRequested":
            message["headers"] = _headers(name)
            message["examples"][0]["headers"] = {
                "ce_id": example["event_id"],
                "ce_type": name,
                "ce_source": CE_SOURCE,
                "ce_specversion": "1.0",
                "ce_time": example["occurred_at"],
                "content-type": "application/json",
            }
        messages[name] = message
    results = ("PaymentLinkCreated", "PaymentLinkFailed")

    def channel(address: str, description: str, names: tuple[str, ...]) -> dict[str, Any]:
        return {
            "address": address,
            "description": description,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {
                "kafka": {
                    "topic": address,
                    "partitions": settings.topic_partitions,
                    "replicas": settings.topic_replication_factor,
                    "bindingVersion": BINDING_VERSION,
                }
            },
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "paylink",
            "version": "1.0.0",
            "description": "Turns a CRM's PaymentLinkRequested into a Stripe-hosted invoice with a short URL and "
            "answers PaymentLinkCreated or PaymentLinkFailed. Messages are UTF-8 JSON, keyed by contact_id. "
            "Topic names and the consumer group are settings (PAYLINK_REQUESTS_TOPIC, PAYLINK_RESULTS_TOPIC, "
            "PAYLINK_CONSUMER_GROUP); this document shows the configured ones.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": settings.kafka_bootstrap_servers.split(",")[0],
                "protocol": "kafka",
                "description": "Kafka bootstrap server (PAYLINK_KAFKA_BOOTSTRAP_SERVERS)",
            }
        },
        "channels": {
            "requests": channel(
                settings.requests_topic,
                "Requests from CRM services. The event_id is the "
                "idempotency key: re-send a request with the same event_id.",
                ("PaymentLinkRequested",),
            ),
            "results": channel(
                settings.results_topic,
                "One result per request (at least once: dedupe on "
                "event_id; payment_link_id is the request's event_id).",
                results,
            ),
        },
        "operations": {
            "receiveRequests": {
                "action": "receive",
                "channel": {"$ref": "#/channels/requests"},
                "summary": "The worker consumes requests; each ends in exactly one result.",
                "messages": [{"$ref": "#/channels/requests/messages/PaymentLinkRequested"}],
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [settings.consumer_group]},
                        "bindingVersion": BINDING_VERSION,
                    }
                },
            },
            "sendResults": {
                "action": "send",
                "channel": {"$ref": "#/channels/results"},
                "summary": "The relay publishes results from the outbox, in order per contact.",
                "messages": [{"$ref": f"#/channels/results/messages/{n}"} for n in results],
            },
        },
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


# --- YAML ------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return json.dumps(value)  # only ever empty here
    text = str(value)
    return text if _PLAIN.match(text) and text.lower() not in _RESERVED else json.dumps(text, ensure_ascii=False)


def to_yaml(value: Any) -> str:
    lines: list[str] = []
    _emit(value, "", lines)
    return "\n".join(lines) + "\n"


def _emit(value: Any, pad: str, lines: list[str]) -> None:
    items = value.items() if isinstance(value, dict) else ((None, item) for item in value)
    for key, item in items:
        head = f"{pad}{_scalar(key)}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(item, dict | list) and item:
            if isinstance(value, dict):
                lines.append(head)
                _emit(item, pad + "  ", lines)
            else:
                nested: list[str] = []
                _emit(item, pad + "  ", nested)
                lines.append(f"{head} {nested[0][len(pad) + 2 :]}")
                lines.extend(nested[1:])
        else:
            lines.append(f"{head} {_scalar(item)}")


# --- settings --------------------------------------------------------------------------------------


def settings_table() -> str:
    """A Markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = (
            "a local test value (set it)"
            if isinstance(default, SecretStr)
            else "unset"
            if default is None
            else f"`{default}`"
        )
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `PAYLINK_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


ASYNCAPI_HEADER = "# paylink's event contract. Generated by `paylink schema --asyncapi`: do not edit by hand.\n"


def asyncapi_yaml(settings: Settings) -> str:
    return ASYNCAPI_HEADER + to_yaml(asyncapi_document(settings))


def default_asyncapi_yaml() -> str:
    """The AsyncAPI document for the default settings: ``deploy/asyncapi.yaml`` holds exactly this."""
    return asyncapi_yaml(Settings.model_construct())


def schema_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.asyncapi:
        print(asyncapi_yaml(settings), end="")
    elif args.settings:
        print(settings_table(), end="")
    else:
        print(json.dumps(event_json_schemas(), indent=2))
    return 0


if __name__ == "__main__":  # python -m consumer.cli.schema > deploy/asyncapi.yaml
    print(default_asyncapi_yaml(), end="")
