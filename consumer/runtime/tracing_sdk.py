"""The OpenTelemetry SDK, installed by ``consumer.runtime.tracing.configure`` when tracing is on.

- No endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``..._TRACES_ENDPOINT`` unset) or ``OTEL_SDK_DISABLED=true``:
  nothing is installed. The OpenTelemetry API stays a no-op (spans are not recorded, nothing is
  exported, no instrumentation is patched in); a request's incoming ``traceparent`` still passes through
  to its results (``consumer.tracing``).
- An endpoint: the SDK's ``TracerProvider`` with the configured sampler, a batch processor exporting
  OTLP/HTTP (protobuf, written by ``tracing_otlp``) to ``<endpoint>/v1/traces``, the maintained httpx
  instrumentation, and PyMongo's command monitoring turned into events on the current span
  (``tracing_mongo``: not the PyMongo instrumentation's span per command, the largest part of what
  tracing cost the worker). They hook into client classes, so ``configure`` runs before the clients are
  built (``open_components``), which also gives the worker's aiohttp sessions (Stripe, the shortener) an
  event per request (``tracing_http``, not the aiohttp-client instrumentation's span). aiokafka's
  instrumentation is not used: see ``consumer.tracing``.

Two limits on what is recorded, both for operators' sake:
- a client call outside any trace (the relay polling the outbox every 20 ms, lease renewals, gauge
  sampling) is not sampled (``NoLooseClientSpans``): it would be a trace of one span, 50 per second;
- Stripe URLs are recorded without their query string: customer searches carry the contact's email there.
  MongoDB events never hold documents or filters.

The batch processor exports in a background thread; the provider is shut down (flushing what is
buffered) when the process exits (``TracerProvider(shutdown_on_exit=True)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes
from pymongo import monitoring

from consumer.runtime.settings import TracingSettings
from consumer.runtime.tracing_mongo import CommandEvents
from consumer.runtime.tracing_otlp import use_for_http_export

log = logging.getLogger("paylink.tracing")


class NoLooseClientSpans(Sampler):
    """``inner``, except that a client span (MongoDB, HTTP) with no parent is dropped."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        # The parent is looked up for client spans only: every span is sampled, few are client spans.
        if kind is SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoLooseClientSpans{{{self._inner.get_description()}}}"


def sampler(settings: TracingSettings) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``) names; an unknown name is a settings error."""
    ratio = TraceIdRatioBased(settings.traces_sampler_arg)
    known: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }
    name = settings.traces_sampler.strip().lower()
    if name not in known:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r} (one of {', '.join(known)})")
    return known[name]


def install(service: str, settings: TracingSettings, exporter: SpanExporter | None = None) -> TracerProvider:
    """The SDK's provider (sampler, batch OTLP/HTTP export or ``exporter``) set as the global one, and the
    client instrumentations. ``service``: the default service name (``OTEL_SERVICE_NAME`` wins)."""
    endpoint = settings.traces_endpoint
    resource = Resource.create({SERVICE_NAME: settings.service_name or service})
    provider = TracerProvider(resource=resource, sampler=NoLooseClientSpans(sampler(settings)))
    if exporter is None and not use_for_http_export():
        log.warning("tracing: the OTLP exporter's encoder is not the one expected; the SDK's is kept (slower)")
    provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    monitoring.register(CommandEvents())  # before the clients are built: they copy the listeners
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    log.info(
        "tracing on",
        extra={"service": settings.service_name or service, "endpoint": endpoint, "sampler": settings.traces_sampler},
    )
    return provider
