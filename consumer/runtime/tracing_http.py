"""HTTP requests of the worker's aiohttp sessions (Stripe, the shortener) as events of the span they run in.

``open_components`` passes ``middlewares()`` to the sessions it builds: empty while nothing records
(``consumer.tracing.recording``), so that tracing off adds nothing to a request. A client middleware, one
coroutine around the request, not an aiohttp ``TraceConfig``: with one, aiohttp creates a parameters
object and awaits a signal at each of a request's stages (start, connection, headers, chunks, end), whether
anything listens or not, about as much CPU as the events themselves (ADR 0015, second amendment). Not the
aiohttp-client instrumentation either, which does much more per request (URL redaction and parsing, a
duration histogram even with no meter, header capture, ``traceparent`` injected into every Stripe request,
which Stripe ignores; ADR 0015, amended).

Not a client span per request (ADR 0015, second amendment): every saga step is one or two HTTP calls, so
a child span per call doubled the spans the worker starts, ends, queues and encodes, for a bar on the
timeline that is the step's own. Each request is an event ``http <METHOD>`` (``http POST``) on the current
recording span (the step, else the saga or cancel span), timestamped when it started, with ``url.full``
without its query string (customer searches carry the contact's e-mail there), ``http.duration_ms``, then
``http.response.status_code`` (when the response's headers arrived), or ``error.type`` (the status of 400
or more, or the exception's class). The name says the method, ``url.full`` the server: neither is
repeated. Requests outside any recording span leave nothing.
"""

from __future__ import annotations

import time

import aiohttp
from opentelemetry import trace
from yarl import URL

from consumer import tracing


def middlewares() -> tuple[aiohttp.ClientMiddlewareType, ...]:
    """What to give an aiohttp session: an event per request while an SDK records, else nothing."""
    return (record_request,) if tracing.recording else ()


async def record_request(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    span = trace.get_current_span()
    if not span.is_recording():
        return await handler(request)
    started = time.time_ns()
    try:
        response = await handler(request)
    except BaseException as error:  # a timeout cancels the request: recorded, then passed on
        _record(span, request.method, request.url, started, None, type(error).__qualname__)
        raise
    status = response.status
    _record(span, request.method, request.url, started, status, str(status) if status >= 400 else None)
    return response


def _record(span: trace.Span, method: str, url: URL, started: int, status: int | None, error: str | None) -> None:
    attributes: dict[str, str | int | float] = {
        "url.full": str(url.with_query(None)),
        "http.duration_ms": (time.time_ns() - started) // 1000 / 1000,  # µs precision, as MongoDB's
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    if error is not None:
        attributes["error.type"] = error
    span.add_event(f"http {method}", attributes, timestamp=started)
