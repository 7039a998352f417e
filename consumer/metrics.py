"""Prometheus metrics of the worker and the relay (one registry per process: the default one)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter("paylink_messages_consumed_total", "Request messages consumed", ["topic"])
SAGAS = Counter(
    "paylink_sagas_total",
    "Sagas ended, by outcome and reason (once per request: duplicates count in paylink_duplicates_total)",
    ["outcome", "reason"],
)
# A separate counter, not a label of SAGAS: sum(paylink_sagas_total) stays "requests finished".
DUPLICATES = Counter(
    "paylink_duplicates_total",
    "Deliveries of an already finished request whose stored result was re-reported, by its outcome",
    ["outcome"],
)
CANCELS = Counter(
    "paylink_cancels_total",
    "Cancels ended, by outcome (voided or rejected) and rejection reason (once per cancel; duplicates count "
    "in paylink_duplicates_total)",
    ["outcome", "reason"],
)
STEP_SECONDS = Histogram(
    "paylink_saga_step_seconds",
    "Duration of one saga step's outside call",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STRIPE_REQUESTS = Counter(
    "paylink_stripe_requests_total", "Stripe API requests by endpoint and outcome", ["endpoint", "status"]
)
RETRIES = Counter("paylink_retries_total", "Transient failures retried", ["reason"])
IN_FLIGHT = Gauge("paylink_in_flight_sagas", "Requests being processed by this worker")
CONSUMER_LAG = Gauge("paylink_consumer_lag", "Messages behind the partition's end", ["partition"])
DEAD_LETTERS = Counter("paylink_dead_letters_total", "Messages dead-lettered", ["reason"])
OUTBOX_BACKLOG = Gauge("paylink_outbox_backlog", "Outbox entries waiting to be published")
OUTBOX_OLDEST_AGE = Gauge("paylink_outbox_oldest_age_seconds", "Age of the oldest unpublished entry")
PUBLISH_LAG = Histogram(
    "paylink_publish_lag_seconds",
    "From outbox append to Kafka acknowledgement",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RELAY_PUBLISHED = Counter("paylink_relay_published_total", "Result events published by the relay")
LEASE_ACTIVE = Gauge("paylink_relay_lease_active", "1 while this relay holds the lease")
ASYNCIO_TASKS = Gauge("paylink_asyncio_tasks", "asyncio tasks alive in this process (a steady rise is a leak)")
WEBHOOKS = Counter(
    "paylink_webhooks_total",
    "Stripe webhook deliveries by event type and outcome (applied, unchanged, duplicate, ignored, pending, "
    "unhandled_type, platform_event, bad_signature, bad_payload, error)",
    ["type", "outcome"],
)
LIFECYCLE_EVENTS = Counter(
    "paylink_lifecycle_events_total",
    "Lifecycle events appended to the outbox, by type and source",
    ["event_type", "source"],
)
