"""Trace propagation without Kafka: a request's ``traceparent`` header in → saga and step spans → the
``traceparent`` stored with its result → the relay's Kafka headers and produce span.

Spans are recorded by the SDK's in-memory exporter on a provider of the test's own (``consumer.tracing``'s
tracer is swapped for one of that provider): nothing global is installed, so other tests stay untraced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from consumer import tracing
from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from consumer.runtime.relay import Relay, RelayOptions, headers_for
from consumer.runtime.settings import TracingSettings
from consumer.runtime.tracing_sdk import NoLooseClientSpans
from consumer.runtime.tracing_sdk import sampler as sampler_for
from domain.saga import PaymentLinkSaga
from domain.stored import OutboxEntry
from tests.fakes.world import REQUEST_ID, World, request_document

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class DeadLetters:
    records: list[dict[str, Any]] = field(default_factory=list)

    async def record(self, **fields: Any) -> str:
        self.records.append(fields)
        return "dl-1"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("paylink"))
    monkeypatch.setattr(tracing, "recording", True)
    yield exporter
    provider.shutdown()


def traced_saga(world: World) -> PaymentLinkSaga:
    return PaymentLinkSaga(
        crm=world.crm,
        billing=world.billing,
        shortener=world.shortener,
        store=world.store,
        outbox=world.outbox,
        clock=world.clock,
        ids=world.ids,
        steps=tracing.StepSpans(),
    )


async def handle(world: World, headers: tuple[tuple[str, bytes], ...], **overrides: Any) -> None:
    handler = RequestHandler(traced_saga(world), DeadLetters(), RetryPolicy(attempts=2, initial_s=0.001, max_s=0.001))
    raw = json.dumps(request_document(**overrides)).encode()
    await handler.handle(handler.prepare(Message("requests", 3, 41, b"contact", raw, headers)))


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


async def test_the_request_header_parents_the_saga_whose_steps_are_children(spans: InMemorySpanExporter) -> None:
    world = World()
    await handle(world, (("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1")))

    named = by_name(spans)
    (saga,) = named["saga PaymentLinkRequested"]
    assert saga.kind is SpanKind.CONSUMER
    assert hex_ids(saga)[0] == TRACE_ID
    assert saga.parent is not None and format(saga.parent.span_id, "016x") == PARENT_ID
    assert saga.attributes is not None
    assert saga.attributes["payment_link_id"] == REQUEST_ID
    assert saga.attributes["correlation_id"] == "corr-1"
    assert saga.attributes["messaging.kafka.offset"] == 41
    steps = [span for span in spans.get_finished_spans() if span.name.startswith("saga step ")]
    assert [s.name for s in steps] == [  # validate's outcome goes in with the saga's insert (ADR 0016)
        "saga step customer",
        "saga step draft",
        "saga step items",
        "saga step items",
        "saga step finalise",
        "saga step shorten",
    ]
    assert all(s.parent is not None and s.parent.span_id == hex_ids_int(saga) for s in steps)
    draft = named["saga step draft"][0]
    assert draft.attributes is not None and str(draft.attributes["stripe.invoice_id"]).startswith("in_")
    assert [s.attributes["paylink.step_try"] for s in named["saga step items"] if s.attributes] == [1, 2]


def hex_ids_int(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


async def test_the_result_carries_the_saga_span_context_to_the_relay_headers(spans: InMemorySpanExporter) -> None:
    world = World()
    await handle(world, (("traceparent", TRACEPARENT.encode()),))

    (saga,) = by_name(spans)["saga PaymentLinkRequested"]
    (result,) = world.outbox.ordered
    stored = world.outbox.traces[result.event_id]
    assert stored["traceparent"] == f"00-{TRACE_ID}-{hex_ids(saga)[1]}-01"
    entry = outbox_entry(result.event_id, tuple(stored.items()))
    assert ("traceparent", stored["traceparent"].encode()) in headers_for(entry)


async def test_without_an_sdk_the_incoming_context_passes_through_to_the_result() -> None:
    world = World()  # no provider swapped in: the API's no-op tracer, as in a process without an endpoint
    await handle(world, (("traceparent", TRACEPARENT.encode()),))

    (result,) = world.outbox.ordered
    assert world.outbox.traces[result.event_id]["traceparent"] == TRACEPARENT


async def test_a_request_without_headers_starts_its_own_trace(spans: InMemorySpanExporter) -> None:
    world = World()
    await handle(world, ())

    (saga,) = by_name(spans)["saga PaymentLinkRequested"]
    assert saga.parent is None
    (result,) = world.outbox.ordered
    assert hex_ids(saga)[0] in world.outbox.traces[result.event_id]["traceparent"]


async def test_a_failed_saga_marks_its_span_and_the_failing_step(spans: InMemorySpanExporter) -> None:
    world = World()
    world.crm.add_contact("acc_1", "64b7f0c2a1b2c3d4e5f60719", name="No Mail", email=None, phone=None)
    await handle(world, (("traceparent", TRACEPARENT.encode()),), contact_id="64b7f0c2a1b2c3d4e5f60719")

    named = by_name(spans)
    (saga,) = named["saga PaymentLinkRequested"]
    assert saga.status.status_code is StatusCode.ERROR
    assert saga.attributes is not None and saga.attributes["error.reason"] == "contact_missing_email"
    (customer,) = named["saga step customer"]
    assert customer.attributes is not None and customer.attributes["error.reason"] == "contact_missing_email"


@dataclass
class Sent:
    partition: int
    offset: int


@dataclass
class Producer:
    headers: list[list[tuple[str, bytes]]] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        self.headers.append(headers)
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        future.set_result(Sent(0, len(self.headers) - 1))
        return future


@dataclass
class Outbox:
    entries: list[OutboxEntry]
    published: list[OutboxEntry] = field(default_factory=list)

    async def unpublished(self, limit: int, after_seq: int | None = None) -> list[OutboxEntry]:
        above = -1 if after_seq is None else after_seq
        return [e for e in self.entries if e not in self.published and e.seq > above][:limit]

    async def mark_published(
        self, entries: list[OutboxEntry], positions: dict[str, tuple[int, int]] | None = None
    ) -> None:
        self.published.extend(entries)


class HeldLease:
    owner = "test"

    async def acquire(self) -> bool:
        return True


def outbox_entry(event_id: str, trace: tuple[tuple[str, str], ...]) -> OutboxEntry:
    return OutboxEntry(event_id, 1, "contact", "PaymentLinkCreated", b"{}", datetime.now(UTC), trace)


async def test_the_relay_sends_the_stored_context_and_a_child_produce_span(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    stored = f"00-{TRACE_ID}-{PARENT_ID}-01"
    entries = [outbox_entry("e-1", (("traceparent", stored),)), outbox_entry("e-2", ())]
    producer = Producer()
    relay = Relay(Outbox(entries), lease=HeldLease(), producer=producer, options=RelayOptions(topic="results"))  # type: ignore[arg-type]

    with caplog.at_level(logging.DEBUG, logger="paylink.relay"):
        assert await relay._hold_lease()  # a relay publishes only while it surely holds the lease
        assert await relay.publish_batch() == 2

    (batch,) = [r for r in caplog.records if r.getMessage() == "published a batch of results"]
    assert batch.levelno == logging.INFO and vars(batch)["count"] == 2 and vars(batch)["offsets"] == {"0": [0, 1]}
    each = [vars(r) for r in caplog.records if r.getMessage() == "result published"]
    assert [(e["event_id"], e["trace_id"]) for e in each] == [("e-1", TRACE_ID), ("e-2", None)]

    assert ("traceparent", stored.encode()) in producer.headers[0]
    assert not any(key == "traceparent" for key, _ in producer.headers[1])
    (send,) = spans.get_finished_spans()  # the untraced entry gets no root span of its own
    assert send.name == "send results" and send.kind is SpanKind.PRODUCER
    assert hex_ids(send)[0] == TRACE_ID
    assert send.parent is not None and format(send.parent.span_id, "016x") == PARENT_ID
    assert send.attributes is not None and send.attributes["messaging.kafka.offset"] == 0


def test_client_calls_outside_a_trace_are_not_sampled_but_inside_one_they_are() -> None:
    sampler = NoLooseClientSpans(sampler_for(TracingSettings()))
    provider = TracerProvider(sampler=sampler)
    tracer = provider.get_tracer("test")
    loose = tracer.start_span("outbox.find", kind=SpanKind.CLIENT)
    assert not loose.is_recording(), "the relay's idle polling would be 50 traces a second"
    with tracer.start_as_current_span("saga PaymentLinkRequested", kind=SpanKind.CONSUMER) as saga:
        assert saga.is_recording()
        assert tracer.start_span("outbox.insert", kind=SpanKind.CLIENT).is_recording()


def test_an_unknown_sampler_names_the_variable() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER"):
        sampler_for(TracingSettings(traces_sampler="sometimes"))


def test_no_endpoint_means_no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert TracingSettings().traces_endpoint is None
    assert TracingSettings(exporter_otlp_endpoint="http://j:4318/").traces_endpoint == "http://j:4318/v1/traces"
    assert TracingSettings(exporter_otlp_endpoint="http://j:4318", sdk_disabled=True).traces_endpoint is None
