"""The worker's HTTP requests as span events (``consumer.runtime.tracing_http``), on a local aiohttp server:
one ``http <METHOD>`` event per request made inside a recording span, on that span, its URL without the
query string (customer searches carry e-mails there); failures named; no span of their own, nothing outside
a trace, and no middleware while nothing records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer import tracing
from consumer.runtime import tracing_http


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"id": "cus_1"})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": "boom"}, status=500)

    app = web.Application()
    app.router.add_get("/v1/customers/search", ok)
    app.router.add_post("/v1/invoices", broken)
    running = TestServer(app)
    await running.start_server()
    try:
        yield running
    finally:
        await running.close()


async def test_requests_inside_a_recording_span_are_its_events_without_the_query(
    provider: tuple[TracerProvider, InMemorySpanExporter], server: TestServer
) -> None:
    sdk, exporter = provider
    tracer = sdk.get_tracer("test")
    async with aiohttp.ClientSession(middlewares=(tracing_http.record_request,)) as session:
        async with session.get(server.make_url('/v1/customers/search?query=email:"ada@example.com"')):
            pass  # outside any span: nothing
        with tracer.start_as_current_span("saga step customer") as step:
            async with session.get(server.make_url('/v1/customers/search?query=email:"ada@example.com"')):
                pass
            async with session.post(server.make_url("/v1/invoices")):
                pass

    (parent,) = exporter.get_finished_spans()
    assert parent.name == "saga step customer" and parent.context == step.get_span_context()
    search, create = parent.events
    assert search.attributes is not None and create.attributes is not None and parent.start_time is not None
    assert search.name == "http GET" and search.timestamp >= parent.start_time
    assert search.attributes["url.full"] == str(server.make_url("/v1/customers/search"))
    assert search.attributes["http.response.status_code"] == 200
    assert isinstance(search.attributes["http.duration_ms"], float) and search.attributes["http.duration_ms"] >= 0
    assert "ada@example.com" not in repr(dict(search.attributes))
    assert create.name == "http POST" and create.attributes["error.type"] == "500"


async def test_a_failed_request_names_its_exception(
    provider: tuple[TracerProvider, InMemorySpanExporter], server: TestServer
) -> None:
    sdk, exporter = provider
    url = server.make_url("/v1/customers/search")
    await server.close()  # nothing listens there any more
    async with aiohttp.ClientSession(middlewares=(tracing_http.record_request,)) as session:
        with sdk.get_tracer("test").start_as_current_span("saga step customer"), pytest.raises(aiohttp.ClientError):
            async with session.get(url):
                pass

    ((failed,),) = [span.events for span in exporter.get_finished_spans()]
    assert failed.name == "http GET" and failed.attributes is not None
    assert (
        str(failed.attributes["error.type"]).startswith("Client")
        and "http.response.status_code" not in failed.attributes
    )


def test_no_middleware_while_nothing_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "recording", False)
    assert tracing_http.middlewares() == ()
    monkeypatch.setattr(tracing, "recording", True)
    assert tracing_http.middlewares() == (tracing_http.record_request,)
