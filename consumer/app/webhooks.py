"""Receiving one Stripe webhook delivery, until its effect is durable (``paylink webhooks``).

``WebhookIntake.receive`` verifies the delivery (signature against the configured secrets), reads its
event, and hands an invoice event to the link's lifecycle (``domain.lifecycle_service``). It answers:

- ``BAD_SIGNATURE`` / ``BAD_PAYLOAD``: nothing is stored (the HTTP layer answers 400);
- ``ACCEPTED``: the event's effect is in the outbox, or there was none to have (an event type paylink
  does not handle, a duplicate, an event for no link of ours or from another account): answer 2xx;
- ``RETRY_LATER``: the link's saga is still running, or the store failed even after the retry policy's
  attempts: answer 5xx so that Stripe delivers it again.

Every delivery is counted in ``paylink_webhooks_total{type, outcome}`` and logged once, with the
Stripe event id and the link's ids but never the secret, the signature or the body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.trace import SpanKind

from consumer import metrics, tracing
from consumer.app.retry import RetryPolicy
from consumer.ports import WebhookReader
from domain.errors import RetryableError
from domain.lifecycle_service import LinkLifecycle, Observed, Outcome
from domain.notifications import InvalidPayload, InvalidSignature, Notification

log = logging.getLogger("paylink.webhooks")


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    BAD_SIGNATURE = "bad_signature"
    BAD_PAYLOAD = "bad_payload"
    RETRY_LATER = "retry_later"


@dataclass(frozen=True)
class Reply:
    verdict: Verdict
    outcome: str  # the metric's outcome label
    detail: str = ""


class WebhookIntake:
    def __init__(self, reader: WebhookReader, lifecycle: LinkLifecycle, policy: RetryPolicy) -> None:
        self._reader = reader
        self._lifecycle = lifecycle
        self._policy = policy

    async def receive(self, payload: bytes, signature: str | None) -> Reply:
        try:
            notification = self._reader.read(payload, signature)
        except InvalidSignature as error:
            return _counted("unknown", Reply(Verdict.BAD_SIGNATURE, "bad_signature", str(error)), {})
        except InvalidPayload as error:
            return _counted("unknown", Reply(Verdict.BAD_PAYLOAD, "bad_payload", str(error)), {})
        context = {"stripe_event_id": notification.id, "stripe_event_type": notification.type}
        if notification.observation is None:
            # Not an invoice event paylink handles, or one of the platform's own account (links live on
            # connected accounts): acknowledged, so Stripe does not retry it.
            outcome = "platform_event" if notification.account is None else "unhandled_type"
            return _counted(notification.type, Reply(Verdict.ACCEPTED, outcome), context)
        context["payment_link_id"] = notification.observation.snapshot.payment_link_id or ""
        try:
            observed = await self._observe(notification)
        except RetryableError as error:
            log.warning("webhook could not be recorded; Stripe will retry", extra={**context, "error": error.message})
            return _counted(notification.type, Reply(Verdict.RETRY_LATER, "error", error.message), context)
        for event in observed.events:
            metrics.LIFECYCLE_EVENTS.labels(event.event_type, event.source.value).inc()
        context.update(_link_context(observed))
        if observed.outcome is Outcome.PENDING:
            return _counted(notification.type, Reply(Verdict.RETRY_LATER, "pending", observed.reason), context)
        return _counted(notification.type, Reply(Verdict.ACCEPTED, observed.outcome.value, observed.reason), context)

    async def _observe(self, notification: Notification) -> Observed:
        observation = notification.observation
        assert observation is not None
        fields = {
            "stripe_event_id": notification.id,
            "stripe_event_type": notification.type,
            "payment_link_id": observation.snapshot.payment_link_id,
        }
        # A delivery starts a trace of its own (Stripe sends no traceparent); lifecycle events it appends
        # carry it to Kafka.
        with tracing.work_span(f"webhook {notification.type}", None, fields, kind=SpanKind.SERVER):
            return await self._policy.run(
                lambda: self._lifecycle.observe(observation), {"stripe_event_id": notification.id}
            )


def _link_context(observed: Observed) -> dict[str, str]:
    record = observed.record
    if record is None:
        return {}
    context = {"account_id": record.account_id, "correlation_id": record.correlation_id or ""}
    if observed.events:
        context["lifecycle_events"] = ",".join(event.event_type for event in observed.events)
    return context


def _counted(event_type: str, reply: Reply, context: dict[str, str]) -> Reply:
    metrics.WEBHOOKS.labels(event_type, reply.outcome).inc()
    level = logging.WARNING if reply.verdict in (Verdict.BAD_SIGNATURE, Verdict.BAD_PAYLOAD) else logging.INFO
    log.log(
        level, "webhook %s", reply.outcome, extra={**context, "verdict": reply.verdict.value, "detail": reply.detail}
    )
    return reply
