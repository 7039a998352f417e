"""``consumer.runtime.tracing_otlp`` writes the OTLP request the SDK's encoder writes, byte for byte: the
spans paylink records (remote parent with trace state, events, every scalar attribute type, statuses,
several scopes), and, through the SDK's encoder, what it does not cover (links, array attributes)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from consumer.runtime import tracing_otlp

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def recorded(links: bool = False, arrays: bool = False) -> Sequence[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "paylink-worker"}, "https://schema/1"))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("paylink")
    http = provider.get_tracer("paylink.http", "1.2", schema_url="https://schema/2")
    parent = TraceContextTextMapPropagator().extract({"traceparent": TRACEPARENT, "tracestate": "vendor=a,other=b"})
    attributes: dict[str, AttributeValue] = {
        "payment_link_id": "pl_1",
        "messaging.kafka.offset": 2**40,
        "negative": -3,
        "ok": True,
    }
    with tracer.start_as_current_span("saga é", context=parent, kind=SpanKind.CONSUMER, attributes=attributes):
        trace.get_current_span().add_event("mongodb insert", {"db.duration_ms": 0.947, "db.collection.name": "s"})
        with tracer.start_as_current_span("saga step draft", attributes={"paylink.step_try": 1}) as step:
            step.add_event("http POST", {"url.full": "http://x/v1/invoices", "http.response.status_code": 200})
            step.add_event("no attributes")
            step.set_status(Status(StatusCode.ERROR, "card_declined"))
        http.start_span("GET", kind=SpanKind.CLIENT).end()
        done = tracer.start_span("ok", links=[Link(step.get_span_context())] if links else ())
        done.set_attribute("empty", "")
        if arrays:
            done.set_attribute("ids", ["a", "b"])
        done.set_status(Status(StatusCode.OK))
        done.end()
    trace.get_current_span().end()
    provider.shutdown()
    return exporter.get_finished_spans()


@pytest.mark.parametrize("links, arrays", [(False, False), (True, False), (False, True)])
def test_the_request_is_the_sdks_byte_for_byte(links: bool, arrays: bool) -> None:
    spans = recorded(links, arrays)
    assert len(spans) == 4
    assert tracing_otlp.encode(spans) == encode_spans(spans).SerializePartialToString()


def test_the_http_exporter_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_exporter, "encode_spans", encode_spans)  # restored after the test
    assert tracing_otlp.use_for_http_export()
    spans = recorded()
    installed = vars(trace_exporter)["encode_spans"]  # the name the exporter calls, as it is now
    assert installed(spans).SerializePartialToString() == tracing_otlp.encode(spans)
    assert not tracing_otlp.use_for_http_export(), "installed once"
