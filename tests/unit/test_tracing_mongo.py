"""MongoDB commands become events of the span they run in (``consumer.runtime.tracing_mongo``), fed with
PyMongo's own monitoring events; outside a recording span they leave nothing."""

from __future__ import annotations

from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo import monitoring

from consumer.runtime.tracing_mongo import CommandEvents

ADDRESS = ("localhost", 27017)


def started(request_id: int, command: dict[str, object]) -> monitoring.CommandStartedEvent:
    return monitoring.CommandStartedEvent(command, "paylink", request_id, ADDRESS, None)


def test_commands_of_a_recording_span_become_its_events() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    listener = CommandEvents()
    with provider.get_tracer("test").start_as_current_span("saga step customer"):
        listener.started(started(1, {"update": "sagas", "updates": []}))
        listener.succeeded(
            monitoring.CommandSucceededEvent(
                timedelta(milliseconds=2), {"ok": 1}, "update", 1, ADDRESS, None, database_name="paylink"
            )
        )
        listener.started(started(2, {"find": "contacts", "filter": {"email": "ada@example.com"}}))
        listener.failed(
            monitoring.CommandFailedEvent(
                timedelta(milliseconds=1), {"ok": 0, "code": 50, "codeName": "MaxTimeMSExpired"}, "find", 2,
                ADDRESS, None, database_name="paylink",
            )
        )  # fmt: skip

    (span,) = exporter.get_finished_spans()
    update, find = span.events
    assert update.name == "mongodb update"
    assert dict(update.attributes or {}) == {"db.duration_ms": 2.0, "db.collection.name": "sagas"}
    assert find.name == "mongodb find" and find.attributes is not None
    assert find.attributes["error.type"] == "MaxTimeMSExpired" and find.attributes["db.response.status_code"] == "50"
    assert "ada@example.com" not in repr(dict(find.attributes)), "never a filter nor a document"
    provider.shutdown()


def test_commands_outside_a_recording_span_leave_nothing() -> None:
    listener = CommandEvents()
    listener.started(started(1, {"find": "outbox"}))
    listener.succeeded(monitoring.CommandSucceededEvent(timedelta(milliseconds=1), {"ok": 1}, "find", 1, ADDRESS, None))
    assert not listener._started
