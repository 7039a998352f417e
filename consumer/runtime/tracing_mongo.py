"""MongoDB commands as events of the span they run in (the saga step, the saga), when tracing is on.

Registered by ``consumer.runtime.tracing_sdk.install`` instead of the PyMongo instrumentation's one span
per command: a saga runs about as many MongoDB commands as all its other spans together, and each span
costs the worker its sampling, ids, context switch, processor hand-off and OTLP encoding (ADR 0015,
amended). An event on the span already open says the same (which command, on which collection, how
long, whether it failed) at a fraction of that. Commands outside any recording span (the relay's idle
polls, lease renewals) leave nothing, as their loose client spans never did (``NoLooseClientSpans``).

Each event is ``mongodb <command>`` (e.g. ``mongodb update``), timestamped when the command started,
with ``db.collection.name``, ``db.duration_ms`` and, on failure, ``error.type`` (the server's
``codeName`` or the client's exception class) and ``db.response.status_code``. No more: the name says
the system and the operation, the process's one database is in its settings, and every attribute is
encoded and exported once per command. Never a document or a filter (like the instrumentation's
``capture_statement`` off).
"""

from __future__ import annotations

import time

from opentelemetry import trace
from pymongo import monitoring

_Key = tuple[int, object]
# A command that never reports its end (its task cancelled mid-command) would stay in ``_started``: past
# this many pending ones the oldest half is forgotten (an event lost, never memory).
MAX_PENDING = 10_000


class CommandEvents(monitoring.CommandListener):
    """PyMongo's command monitoring, turned into events on the current recording span."""

    def __init__(self) -> None:
        # Started commands of a recording span: (start time in ns, collection), until they end.
        self._started: dict[_Key, tuple[int, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not trace.get_current_span().is_recording():
            return
        collection = event.command.get(event.command_name)
        name = collection if isinstance(collection, str) else ""
        if len(self._started) >= MAX_PENDING:
            for key in list(self._started)[: MAX_PENDING // 2]:
                del self._started[key]
        self._started[(event.request_id, event.connection_id)] = (time.time_ns(), name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._record(event, None, None)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        # The server's error document, or {"errmsg", "errtype"} for a client-side error (network, timeout).
        failure = event.failure
        self._record(event, str(failure.get("codeName") or failure.get("errtype") or "error"), failure.get("code"))

    def _record(
        self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent, error: str | None, code: object
    ) -> None:
        started = self._started.pop((event.request_id, event.connection_id), None)
        if started is None:
            return
        at, collection = started
        attributes: dict[str, str | float] = {"db.duration_ms": event.duration_micros / 1000}
        if collection:
            attributes["db.collection.name"] = collection
        if error is not None:
            attributes["error.type"] = error
            if isinstance(code, int):
                attributes["db.response.status_code"] = str(code)
        # The span current when the command ends is the one it started in (same task, same context).
        trace.get_current_span().add_event(f"mongodb {event.command_name}", attributes, timestamp=at)
