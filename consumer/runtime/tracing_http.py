"""A client span per HTTP request of the worker's aiohttp sessions (Stripe, the shortener), when tracing is on.

``open_components`` passes ``trace_configs()`` to the sessions it builds: empty while nothing records
(``consumer.tracing.recording``), so that tracing off adds not even aiohttp's request signals. Not the
aiohttp-client instrumentation, which does much more per request (URL redaction and
parsing, a duration histogram even with no meter, header capture, the span made current and
``traceparent`` injected into every Stripe request, which Stripe ignores; ADR 0015, amended).

Each span is named by the method (``POST``), a child of the current span (the step), with
``http.request.method``, ``url.full`` without its query string (customer searches carry the contact's
e-mail there), ``server.address``, ``server.port``, then ``http.response.status_code``; a status of 400
or more, or an exception, marks it failed with ``error.type``.
"""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from consumer import tracing


def trace_configs() -> list[aiohttp.TraceConfig]:
    """What to give an aiohttp session: a span per request while an SDK records, else nothing."""
    return [trace_config(trace.get_tracer("paylink.http"))] if tracing.recording else []


def trace_config(tracer: trace.Tracer) -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()

    async def start(_: aiohttp.ClientSession, call: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        call.span = None
        if not trace.get_current_span().is_recording():
            return  # a request outside any recorded span: no trace of one span
        url = params.url
        attributes = {"http.request.method": params.method, "url.full": str(url.with_query(None))}
        call.span = tracer.start_span(
            params.method,
            kind=SpanKind.CLIENT,
            attributes={**attributes, "server.address": url.host or "", "server.port": url.port or 0},
        )

    async def end(_: aiohttp.ClientSession, call: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        span: trace.Span | None = getattr(call, "span", None)
        if span is None:
            return
        status = params.response.status
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    async def failed(
        _: aiohttp.ClientSession, call: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        span: trace.Span | None = getattr(call, "span", None)
        if span is None:
            return
        span.set_attribute("error.type", type(params.exception).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(params.exception)))
        span.end()

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    config.on_request_exception.append(failed)
    return config
