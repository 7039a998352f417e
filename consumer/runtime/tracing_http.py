"""HTTP requests of the worker's aiohttp sessions (Stripe, the shortener) as events of the span they run in.

``open_components`` passes ``trace_configs()`` to the sessions it builds: empty while nothing records
(``consumer.tracing.recording``), so that tracing off adds not even aiohttp's request signals. Not the
aiohttp-client instrumentation, which does much more per request (URL redaction and parsing, a duration
histogram even with no meter, header capture, ``traceparent`` injected into every Stripe request, which
Stripe ignores; ADR 0015, amended).

Not a client span per request either (ADR 0015, second amendment): every saga step is one or two HTTP
calls, so a child span per call doubled the spans the worker starts, ends, queues and encodes, for a bar
on the timeline that is the step's own. Each request is an event ``http <METHOD>`` (``http POST``) on
the current recording span (the step, else the saga or cancel span), timestamped when it started, with
``url.full`` without its query string (customer searches carry the contact's e-mail there),
``http.duration_ms``, then ``http.response.status_code``, or ``error.type`` (the status of 400 or more,
or the exception's class). The name says the method, ``url.full`` the server: neither is repeated.
Requests outside any recording span leave nothing.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import aiohttp
from opentelemetry import trace
from yarl import URL

from consumer import tracing


def trace_configs() -> list[aiohttp.TraceConfig]:
    """What to give an aiohttp session: an event per request while an SDK records, else nothing."""
    return [trace_config()] if tracing.recording else []


def trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()

    async def start(_: aiohttp.ClientSession, call: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        span = trace.get_current_span()
        # The span is kept, not looked up again at the end: the event goes where the request started.
        call.span = span if span.is_recording() else None
        if call.span is not None:
            call.started = time.time_ns()

    async def end(_: aiohttp.ClientSession, call: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        _record(call, params.method, params.url, status, str(status) if status >= 400 else None)

    async def failed(
        _: aiohttp.ClientSession, call: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        _record(call, params.method, params.url, None, type(params.exception).__qualname__)

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    config.on_request_exception.append(failed)
    return config


def _record(call: SimpleNamespace, method: str, url: URL, status: int | None, error: str | None) -> None:
    span: trace.Span | None = getattr(call, "span", None)
    if span is None:
        return
    attributes: dict[str, str | int | float] = {
        "url.full": str(url.with_query(None)),
        "http.duration_ms": (time.time_ns() - call.started) // 1000 / 1000,  # µs precision, as MongoDB's
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    if error is not None:
        attributes["error.type"] = error
    span.add_event(f"http {method}", attributes, timestamp=call.started)
