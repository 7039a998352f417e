"""One request's whole trace, as Jaeger returns it: a request with a ``traceparent`` goes through
``paylink worker`` and ``paylink relay`` processes exporting OTLP to a Jaeger v2 of the test's own
(``.local/bin/jaeger``, built by ``make test``; on free ports), and the trace read back through
Jaeger's query API holds the saga span (child of the request's span), its step spans, the Stripe and
shortener HTTP requests and the MongoDB commands as events of the step and saga spans (ADR 0015,
amended), and the relay's produce span; the result's Kafka
``traceparent`` is in the same trace.

The span names and durations are printed (``pytest -s``) and written to ``trace.json`` in the test's
temporary directory (the closing note of issue 14 shows such a trace).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, logs_of, wait_until
from tests.integration.harness import ResultCollector, request, seed_tenant
from tests.jaeger import Jaeger, running_jaeger

TRACE_ID = uuid.uuid4().hex
PARENT_ID = uuid.uuid4().hex[:16]


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    # No skip: `make test` builds the binary, and a missing one must fail the run (running_jaeger says how).
    with running_jaeger(tmp_path / "jaeger.log") as running:
        yield running


async def produce_with_traceparent(settings: Settings, body: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        headers = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode())]
        await producer.send_and_wait(
            settings.requests_topic, json.dumps(body).encode(), key=body["contact_id"].encode(), headers=headers
        )
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Span:
    id: str
    parent: str | None
    name: str
    service: str
    start_us: int
    duration_us: int
    tags: dict[str, Any]
    events: list[dict[str, Any]]  # each event's fields, its name under "event" (Jaeger's span logs)


def spans_of(trace: dict[str, Any]) -> list[Span]:
    services = {key: process["serviceName"] for key, process in trace["processes"].items()}
    found = []
    for span in trace["spans"]:
        parents = [ref["spanID"] for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"]
        tags = {tag["key"]: tag["value"] for tag in span.get("tags", [])}
        events = [{field["key"]: field["value"] for field in log["fields"]} for log in span.get("logs", [])]
        found.append(
            Span(
                span["spanID"],
                parents[0] if parents else None,
                span["operationName"],
                services[span["processID"]],
                span["startTime"],
                span["duration"],
                tags,
                events,
            )
        )
    return sorted(found, key=lambda s: s.start_us)


async def fetch_trace(query: str) -> list[Span]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{query}/api/traces/{TRACE_ID}", timeout=5)
    if response.status_code != 200:
        return []
    data = response.json().get("data") or []
    return spans_of(data[0]) if data else []


async def test_a_request_trace_reaches_jaeger_whole(
    jaeger: Jaeger,
    pipeline_stack: StackFactory,
    mongo_client: Any,
    stripe_api_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = await pipeline_stack()
    db = mongo_client[settings.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, {"ada": {"name": "Ada", "email": "ada@example.com"}})
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s instead of 5 s
    body = request(tenant, "ada")
    worker = PaylinkProcess("worker", settings, tmp_path).start()
    relay = PaylinkProcess("relay", settings, tmp_path).start()
    try:
        async with ResultCollector(settings) as results:
            await produce_with_traceparent(settings, body)
            await results.wait_for({body["event_id"]}, timeout_s=60)
            (record,) = [r for r in results.records if json.loads(r.value)["payment_link_id"] == body["event_id"]]
        headers = dict(record.headers)
        assert headers["traceparent"].decode().split("-")[1] == TRACE_ID, "the result continues the request's trace"

        spans: list[Span] = []

        async def whole() -> bool:
            nonlocal spans
            spans = await fetch_trace(jaeger.query)
            # The saga span ends last (after its result's append): wait for it too, not only its children.
            return any(s.name == "saga PaymentLinkRequested" for s in spans) and any(
                s.name == f"send {settings.results_topic}" for s in spans
            )

        await wait_until(whole, 30, f"the whole trace in Jaeger; logs:\n{logs_of(tmp_path)[-3000:]}")
    finally:
        worker.terminate()
        relay.terminate()
    record_sample(spans, tmp_path)
    assert_whole(spans, settings)


def assert_whole(spans: list[Span], settings: Settings) -> None:
    (saga,) = [s for s in spans if s.name == "saga PaymentLinkRequested"]
    assert saga.parent == PARENT_ID and saga.service == "paylink-worker"
    assert saga.tags["correlation_id"] and saga.tags["payment_link_id"]
    steps = {
        s.name.removeprefix("saga step "): s for s in spans if s.name.startswith("saga step ") and s.parent == saga.id
    }
    # validate is checked with the saga's insert (ADR 0016): no span of its own
    assert {"customer", "draft", "items", "finalise", "shorten"} <= steps.keys()
    assert str(steps["draft"].tags["stripe.invoice_id"]).startswith("in_")

    # HTTP requests are events of the step they run in (ADR 0015, second amendment), not spans.
    assert not [s for s in spans if "http.request.method" in s.tags or "http.method" in s.tags]
    calls = {name: [e for e in step.events if str(e["event"]).startswith("http ")] for name, step in steps.items()}
    assert [e["event"] for e in calls["draft"]] == ["http POST"], "the draft's Stripe request, on its span"
    assert calls["draft"][0]["http.response.status_code"] == 200 and calls["draft"][0]["http.duration_ms"] >= 0
    assert str(calls["draft"][0]["url.full"]).endswith("/v1/invoices")
    assert calls["finalise"] and calls["shorten"]
    commands = {
        s.name: [e for e in s.events if str(e["event"]).startswith("mongodb ")] for s in [saga, *steps.values()]
    }
    assert any(e["event"] == "mongodb insert" for e in commands[saga.name]), "the saga's insert, on its span"
    assert all(e["db.collection.name"] and e["db.duration_ms"] >= 0 for e in commands[saga.name])
    assert commands[steps["customer"].name], "the customer step's MongoDB commands, on its span"
    (send,) = [s for s in spans if s.name == f"send {settings.results_topic}"]
    assert send.service == "paylink-relay" and send.parent == saga.id


def record_sample(spans: list[Span], tmp_path: Path) -> None:
    depth: dict[str, int] = {}
    by_id = {s.id: s for s in spans}

    def level(span: Span) -> int:
        if span.id not in depth:
            depth[span.id] = 0 if span.parent not in by_id else level(by_id[span.parent]) + 1
        return depth[span.id]

    rows = [
        f"{'  ' * level(s)}{s.name} [{s.service}] {s.duration_us / 1000:.1f} ms"
        + "".join(
            f"\n{'  ' * level(s)}  · {e.get('event')} {e.get('db.duration_ms', e.get('http.duration_ms', ''))}"
            for e in s.events
        )
        for s in spans
    ]
    (tmp_path / "trace.json").write_text(json.dumps([s.__dict__ for s in spans], default=str, indent=1))
    print("\n".join(["", f"trace {TRACE_ID}: {len(spans)} spans", *rows]))
