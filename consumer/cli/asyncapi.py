"""The AsyncAPI 3.0 document of paylink's topics, and the small YAML writer that prints it.

The document covers both topics: the request, the results and the lifecycle events, their payload
schemas (``domain.events.event_json_schemas`` and ``domain.lifecycle_events.lifecycle_json_schemas``,
merged here), the CloudEvents-style Kafka headers of everything on the results topic and the record key
(``contact_id``). ``deploy/asyncapi.yaml`` is this document for the default settings (a unit test keeps
it equal). Each message has a one-line summary and an example that the models accept (tested).

The YAML is written here (a few lines for dicts, lists and scalars) so the runtime needs no YAML
library; strings are double-quoted (JSON escapes) unless they are plainly safe words.
"""

from __future__ import annotations

import json
import re
from typing import Any

from consumer.cli.examples import EXAMPLES, LIFECYCLE, REQUESTS, RESULTS, SUMMARIES
from consumer.runtime.settings import Settings
from domain.events import event_json_schemas
from domain.lifecycle_events import lifecycle_json_schemas

BINDING_VERSION = "0.5.0"
CE_SOURCE = "paylink"  # equals consumer.runtime.relay.CE_SOURCE (tested)
RESULT_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "content-type")


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
            "ce_time": {**text, "format": "date-time", "description": "when the event entered the outbox"},
            "content-type": {**text, "const": "application/json"},
        },
    }


def all_json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of every event, keyed by ``event_type``: the request, results, lifecycle events."""
    return {**event_json_schemas(), **lifecycle_json_schemas()}


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, schema in all_json_schemas().items():
        schemas[name] = _lift(schema, schemas)
        example = EXAMPLES[name]
        message: dict[str, Any] = {
            "name": name,
            "title": name,
            "summary": SUMMARIES[name],
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
        if name not in REQUESTS:
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
    results = RESULTS + LIFECYCLE

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
            "answers PaymentLinkCreated or PaymentLinkFailed; then tells what happens to the link (paid, payment "
            "failed, overdue, uncollectible, voided) with lifecycle events on the same topic. "
            "A PaymentLinkCancelRequested voids a link's invoice (PaymentLinkVoided) or is answered with "
            "PaymentLinkCancelRejected. Messages are UTF-8 "
            "JSON, keyed by contact_id. "
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
                "Requests from CRM services: payment links to create, and links to cancel (told apart by "
                "event_type). The event_id is the idempotency key: re-send a request with the same event_id.",
                REQUESTS,
            ),
            "results": channel(
                settings.results_topic,
                "One result per run of a request, then the link's lifecycle events. At least once: a stored result "
                "may be re-published (duplicate requests, relay restarts) with the same event_id, so dedupe on "
                "event_id. A PaymentLinkFailed with retryable=true is not final: a replay may later publish "
                "PaymentLinkCreated (or another Failed) for the same payment_link_id; attempt orders them, the "
                "highest wins. payment_link_id is the request's event_id.",
                results,
            ),
        },
        "operations": {
            "receiveRequests": {
                "action": "receive",
                "channel": {"$ref": "#/channels/requests"},
                "summary": "The worker consumes requests and cancels; each run of one ends in one result.",
                "messages": [{"$ref": f"#/channels/requests/messages/{n}"} for n in REQUESTS],
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
                "summary": "The relay publishes results and lifecycle events from the outbox, in order per contact.",
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


ASYNCAPI_HEADER = "# paylink's event contract. Generated by `paylink schema --asyncapi`: do not edit by hand.\n"


def asyncapi_yaml(settings: Settings) -> str:
    return ASYNCAPI_HEADER + to_yaml(asyncapi_document(settings))


def default_asyncapi_yaml() -> str:
    """The AsyncAPI document for the default settings: ``deploy/asyncapi.yaml`` holds exactly this."""
    return asyncapi_yaml(Settings.model_construct())
