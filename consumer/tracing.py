"""Spans and log context of one unit of work (a request, a cancel, a webhook delivery), on the OpenTelemetry API.

This module uses the API only: which SDK (if any) records and exports the spans is decided once per process
by ``consumer.runtime.tracing.configure``. With no SDK installed (``recording`` false) the hooks here do
no span work at all, with one useful effect kept: a request's incoming W3C context stays current while it
is handled, so the results it produces still carry its ``traceparent`` (pass-through) and log lines still
carry its ``trace_id``.

- ``work_span`` opens the span of one message (``saga PaymentLinkRequested``, ``cancel ...``), child of the
  context in the message's ``traceparent``/``tracestate`` headers, and sets the log context (the ids every
  log record about that message carries, ``trace_id`` included; see ``consumer.runtime.logs``).
- ``StepSpans`` is the saga's ``domain.ports.StepObserver``: one child span per step try.
- ``current_headers`` is the W3C context to store with what the current span produces (outbox entries).

Why not the aiokafka instrumentation on the consumer side: its ``getmany`` wrapper opens and ends one
``receive`` span per record inside the fetch, while the worker handles each record later in its own task;
those spans are over before the saga starts and are not its parent, and the wrapper adds three spans per
fetched batch to the hot path. The worker therefore extracts each record's context from its headers with
the W3C propagator (``extract``) and parents the saga span on it. On the producer side its ``send`` wrapper
injects the context current at send time, which in the relay loop is none: the relay instead sends the
context stored with each outbox entry (``consumer.runtime.relay``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from domain.errors import PaylinkError
from domain.saga_record import SagaRecord
from domain.stored import OutboxEntry

TRACE_HEADERS = ("traceparent", "tracestate")
_tracer = trace.get_tracer("paylink")  # a proxy: follows the provider installed later, if any

# Switched off only by the tracing benchmark's baseline (every code path here skipped); tests and the
# processes leave it on.
enabled = True
# True once an SDK records spans: ``use_tracer`` (``consumer.runtime.tracing.configure``, tests). While it
# is False no span can record, so the hooks below skip the API's no-op spans altogether (their context
# managers, attribute dicts and context switches cost a few microseconds each, several times per saga)
# and only keep an incoming context current: the pass-through that results and log lines rely on.
recording = False

_NO_FIELDS: Mapping[str, object] = MappingProxyType({})
LOG_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("paylink_log_context", default=_NO_FIELDS)
_STEP_TRIES: ContextVar[dict[str, int] | None] = ContextVar("paylink_step_tries", default=None)


def use_tracer(tracer: trace.Tracer) -> None:
    """Spans from now on go to ``tracer`` (one of the SDK's provider), and the hooks record them."""
    global _tracer, recording
    _tracer, recording = tracer, True


def extract(headers: Sequence[tuple[str, bytes]] | None) -> otel_context.Context:
    """The W3C context in Kafka ``headers`` (an empty context when they carry none)."""
    carrier = {key: value.decode("latin-1") for key, value in headers or () if key in TRACE_HEADERS and value}
    return propagate.extract(carrier) if carrier else otel_context.Context()


def extract_stored(stored: Sequence[tuple[str, str]]) -> otel_context.Context:
    """The W3C context kept with an outbox entry (see ``current_headers``)."""
    return propagate.extract(dict(stored)) if stored else otel_context.Context()


def current_headers() -> tuple[tuple[str, str], ...]:
    """``traceparent`` (and ``tracestate``) of the current span; empty when there is none."""
    if not enabled:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple((key, carrier[key]) for key in TRACE_HEADERS if key in carrier)


def trace_id() -> str | None:
    """The current trace id (32 hex digits), or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextlib.contextmanager
def log_context(fields: Mapping[str, object]) -> Iterator[None]:
    """Adds ``fields`` to every log record written inside (on top of the enclosing ones)."""
    token = LOG_CONTEXT.set({**LOG_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        LOG_CONTEXT.reset(token)


@contextlib.contextmanager
def work_span(
    name: str,
    headers: Sequence[tuple[str, bytes]] | None,
    fields: Mapping[str, object],
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """The span of one message, child of its headers' context; ``fields`` (ids) go on span and log records."""
    if not recording:
        with _passed_through(headers) if enabled else contextlib.nullcontext(), log_context(fields):
            yield
        return
    attrs = {key: str(value) for key, value in fields.items() if value is not None}
    attrs.update(attributes or {})
    tries = _STEP_TRIES.set({})
    try:
        with (
            _tracer.start_as_current_span(name, context=extract(headers), kind=kind, attributes=attrs) as span,
            log_context(fields),
        ):
            try:
                yield
            except PaylinkError as error:
                span.set_attribute("error.reason", str(error.reason))
                raise
    finally:
        _STEP_TRIES.reset(tries)


@contextlib.contextmanager
def _passed_through(headers: Sequence[tuple[str, bytes]] | None) -> Iterator[None]:
    """The headers' context made current as is, when no span records: what the API's no-op tracer would
    do with a span started from it (its ``NonRecordingSpan``), without the span machinery."""
    context = extract(headers) if headers else None
    if context is None or not trace.get_current_span(context).get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span (a retry, a give-up); nothing without an SDK."""
    if recording and enabled:
        trace.get_current_span().add_event(name, dict(attributes))


def mark_failed(reason: str, message: str) -> None:
    """Marks the current span failed with ``reason`` (a message the saga ended with, e.g. Stripe's)."""
    if not (recording and enabled):
        return
    span = trace.get_current_span()
    span.set_attribute("error.reason", reason)
    span.set_status(Status(StatusCode.ERROR, message))


class _StepSpan:
    """One step try's span, current while the step runs: a plain context manager, not ``contextlib``'s
    generator around ``start_as_current_span``'s (two more generators and ``use_span`` per step, for the
    same attach, exception recording and end)."""

    __slots__ = ("_span", "_token")

    def __init__(self, name: str, attempt: int) -> None:
        tries = _STEP_TRIES.get()
        count = 1
        if tries is not None:
            count = tries[name] = tries.get(name, 0) + 1
        attributes: dict[str, str | int] = {
            "paylink.step": name,
            "paylink.saga_attempt": attempt,
            "paylink.step_try": count,
        }
        self._span = _tracer.start_span(f"saga step {name}", attributes=attributes)

    def __enter__(self) -> _StepSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        span = self._span
        otel_context.detach(self._token)
        if isinstance(error, Exception):  # as ``use_span``: not CancelledError, GeneratorExit
            if isinstance(error, PaylinkError):
                span.set_attributes({"error.reason": str(error.reason), "error.retryable": error.retryable})
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    def produced(self, record: SagaRecord) -> None:
        ids = {
            "stripe.account": record.stripe_account,
            "stripe.customer_id": record.customer_id,
            "stripe.invoice_id": record.invoice_id,
        }
        self._span.set_attributes({key: value for key, value in ids.items() if value})  # one lock, not three


class _NoStepSpan:
    def produced(self, record: SagaRecord) -> None:
        return None


_UNOBSERVED: contextlib.nullcontext[_NoStepSpan] = contextlib.nullcontext(_NoStepSpan())  # reusable


class StepSpans:
    """``domain.ports.StepObserver`` on OpenTelemetry: ``saga step <name>``, child of the saga span."""

    def step(self, name: str, attempt: int) -> contextlib.AbstractContextManager[_StepSpan | _NoStepSpan]:
        # No span for a step whose saga span does not record (no SDK, or the saga not sampled): every
        # configured sampler would drop it too (the ratio samplers decide by the trace id, shared).
        if not (recording and enabled and trace.get_current_span().is_recording()):
            return _UNOBSERVED
        return _StepSpan(name, attempt)


def stored_trace_id(stored: Sequence[tuple[str, str]]) -> str | None:
    """The trace id in a stored W3C context (see ``current_headers``), or None."""
    context = trace.get_current_span(extract_stored(stored)).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class ProduceSpans:
    """The relay's ``send <topic>`` spans of one batch, each a child of the span that produced its entry.

    Started before each send, ended once the batch's acknowledgements settled (so a span lasts until Kafka
    acknowledged it). Entries stored outside any trace get none: a root span per result would be noise.
    """

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self._spans: list[trace.Span | None] = []

    def start(self, entry: OutboxEntry) -> None:
        if not (recording and enabled and entry.trace):
            self._spans.append(None)
            return
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": self._topic,
            "messaging.message.id": entry.event_id,
            "paylink.event_type": entry.event_type,
        }
        parent = extract_stored(entry.trace)
        self._spans.append(
            _tracer.start_span(f"send {self._topic}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes)
        )

    def end(self, outcomes: Sequence[object]) -> None:
        for span, outcome in zip(self._spans, outcomes, strict=False):
            if span is None:
                continue
            if isinstance(outcome, BaseException):
                span.record_exception(outcome)
                span.set_status(Status(StatusCode.ERROR, type(outcome).__name__))
            else:
                partition, offset = getattr(outcome, "partition", None), getattr(outcome, "offset", None)
                if isinstance(partition, int) and isinstance(offset, int):
                    span.set_attribute("messaging.destination.partition.id", str(partition))
                    span.set_attribute("messaging.kafka.offset", offset)
            span.end()
        for span in self._spans[len(outcomes) :]:  # sends never made (the batch failed before them)
            if span is not None:
                span.end()
