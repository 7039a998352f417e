"""Prometheus metrics of paylink's processes.

The metrics are created unregistered; each process exports only its own set (``WORKER``, ``RELAY``,
``WEBHOOKS``) through a registry the composition root builds with ``registry_of``: a relay never
exports the worker's in-flight gauge, a worker never exports the relay's lease. ``ALL`` is every metric
(for the checks that alert rules and dashboard panels name only metrics that exist).

Counters export no ``_created`` series: a scrape-time timestamp per label set doubles the series count,
and Prometheus's ``rate``/``increase`` do not need it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase

disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client 0.26

MESSAGES_CONSUMED = Counter("paylink_messages_consumed_total", "Request messages consumed", ["topic"], registry=None)
SAGAS = Counter(
    "paylink_sagas_total",
    "Sagas ended, by outcome and reason (once per request: duplicates count in paylink_duplicates_total)",
    ["outcome", "reason"],
    registry=None,
)
# Apart from SAGAS so that its label set stays as documented: a retryable failure is not final (a replay
# may still create the link), and it is what an operator alerts on.
RETRYABLE_FAILURES = Counter(
    "paylink_retryable_failures_total",
    "Sagas that gave up on a transient fault after every retry (PaymentLinkFailed retryable=true), by reason",
    ["reason"],
    registry=None,
)
# A separate counter, not a label of SAGAS: sum(paylink_sagas_total) stays "requests finished".
DUPLICATES = Counter(
    "paylink_duplicates_total",
    "Deliveries of an already finished request whose stored result was re-reported, by its outcome",
    ["outcome"],
    registry=None,
)
CANCELS = Counter(
    "paylink_cancels_total",
    "Cancels ended, by outcome (voided or rejected) and rejection reason (once per cancel; duplicates count "
    "in paylink_duplicates_total)",
    ["outcome", "reason"],
    registry=None,
)
# Stripe calls are labelled by Stripe endpoint (a fixed set of about ten names, e.g. "invoices.create"),
# never by saga step: one step calls several endpoints, and an endpoint serves several steps.
STRIPE_REQUESTS = Counter(
    "paylink_stripe_requests_total",
    "Stripe API requests by endpoint and HTTP status (ok, or the status code, or the error type)",
    ["endpoint", "status"],
    registry=None,
)
STRIPE_SECONDS = Histogram(
    "paylink_stripe_request_seconds",
    "Duration of one Stripe API request (rate-limit waits excluded), by endpoint",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)
# The saga's own steps (validate, customer, draft, items, finalise, shorten: a fixed set), each with every
# outside call it makes (CRM, Stripe, shortener, the saga store), measured when the step completes.
STEP_SECONDS = Histogram(
    "paylink_saga_step_seconds",
    "Duration of one completed saga step (all its calls: CRM, Stripe, shortener, saga store), by step",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
RETRIES = Counter("paylink_retries_total", "Transient failures retried", ["reason"], registry=None)
IN_FLIGHT = Gauge("paylink_in_flight_sagas", "Requests being processed by this worker", registry=None)
CONSUMER_LAG = Gauge("paylink_consumer_lag", "Messages behind the partition's end", ["partition"], registry=None)
DEAD_LETTERS = Counter("paylink_dead_letters_total", "Messages dead-lettered", ["reason"], registry=None)
OUTBOX_BACKLOG = Gauge("paylink_outbox_backlog", "Outbox entries waiting to be published", registry=None)
OUTBOX_OLDEST_AGE = Gauge("paylink_outbox_oldest_age_seconds", "Age of the oldest unpublished entry", registry=None)
PUBLISH_LAG = Histogram(
    "paylink_publish_lag_seconds",
    "From outbox append to Kafka acknowledgement",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
RELAY_PUBLISHED = Counter("paylink_relay_published_total", "Result events published by the relay", registry=None)
LEASE_ACTIVE = Gauge("paylink_relay_lease_active", "1 while this relay holds the lease", registry=None)
ASYNCIO_TASKS = Gauge(
    "paylink_asyncio_tasks", "asyncio tasks alive in this process (a steady rise is a leak)", registry=None
)
WEBHOOKS = Counter(
    "paylink_webhooks_total",
    "Stripe webhook deliveries by event type and outcome (applied, unchanged, duplicate, ignored, pending, "
    "unhandled_type, platform_event, bad_signature, bad_payload, error)",
    ["type", "outcome"],
    registry=None,
)
LIFECYCLE_EVENTS = Counter(
    "paylink_lifecycle_events_total",
    "Lifecycle events appended to the outbox, by type and source",
    ["event_type", "source"],
    registry=None,
)

Metric = MetricWrapperBase

# What each process updates, hence exports. The relay runs the overdue scan (Stripe calls, retries,
# lifecycle events); the webhooks process appends lifecycle events under a retry policy.
WORKER: tuple[Metric, ...] = (
    MESSAGES_CONSUMED,
    SAGAS,
    RETRYABLE_FAILURES,
    DUPLICATES,
    CANCELS,
    STRIPE_REQUESTS,
    STRIPE_SECONDS,
    STEP_SECONDS,
    RETRIES,
    IN_FLIGHT,
    CONSUMER_LAG,
    DEAD_LETTERS,
    ASYNCIO_TASKS,
)
RELAY: tuple[Metric, ...] = (
    RELAY_PUBLISHED,
    PUBLISH_LAG,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    LEASE_ACTIVE,
    LIFECYCLE_EVENTS,
    STRIPE_REQUESTS,
    STRIPE_SECONDS,
    RETRIES,
    ASYNCIO_TASKS,
)
WEBHOOKS_PROCESS: tuple[Metric, ...] = (WEBHOOKS, LIFECYCLE_EVENTS, RETRIES)
ALL: tuple[Metric, ...] = tuple(dict.fromkeys((*WORKER, *RELAY, *WEBHOOKS_PROCESS)))


def registry_of(metrics: tuple[Metric, ...]) -> CollectorRegistry:
    """A registry exporting ``metrics`` only (a metric may be in several processes' registries)."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in metrics:
        registry.register(metric)
    return registry


def exported_names(metrics: tuple[Metric, ...] = ALL) -> set[str]:
    """Every series name ``metrics`` export (counters' ``_total``, histograms' ``_bucket``/``_count``/``_sum``)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix for metric in metrics for family in metric.describe() for suffix in suffixes[family.type]
    }
