"""Catching up with Stripe: ``paylink reconcile`` and the periodic overdue scan.

Webhooks can be lost, late or misconfigured. Both use cases read a link's invoice from Stripe (its
current state) and hand it to the link's lifecycle as an observation (``source`` ``reconcile`` or
``scan``); the lifecycle's deterministic event ids make whatever a webhook already published converge
on the same events, so running either again publishes nothing new.

- ``Reconciler`` looks at created links (updated since ``since``, optionally of one account) whose
  lifecycle is not final: a missed ``invoice.paid`` becomes ``PaymentLinkPaid(source=reconcile)``.
- ``OverdueScan`` looks at created links whose due date has passed and that are neither final nor
  flagged overdue: ``PaymentLinkOverdue(source=scan)`` (Stripe's ``invoice.overdue`` needs an optional
  automation, so paylink does not wait for it), or whatever else the invoice shows.

Failed payment attempts are only known from webhooks: an invoice read later shows its current status,
not the attempts in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from opentelemetry.trace import SpanKind

from consumer import metrics, tracing
from consumer.app.retry import RetryPolicy
from consumer.ports import SagaQueries
from domain.errors import PaylinkError
from domain.events import PaymentLinkCreated
from domain.lifecycle import Observation
from domain.lifecycle_events import Source
from domain.lifecycle_service import LinkLifecycle, Observed, Outcome
from domain.ports import Billing, Clock, LifecycleStore
from domain.saga_record import SagaRecord

log = logging.getLogger("paylink.reconcile")


@dataclass
class Tally:
    checked: int = 0
    already_final: int = 0
    events: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    missing: int = 0  # the invoice is gone from Stripe (or the link's data is inconsistent)
    failed: int = 0

    def summary(self) -> str:
        published = ", ".join(f"{kind} {count}" for kind, count in sorted(self.events.items())) or "none"
        return (
            f"checked {self.checked} link(s): events {published}; unchanged {self.unchanged}; "
            f"already final {self.already_final}; invoice missing {self.missing}; failed {self.failed}"
        )

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class Finding:
    """One link looked at: what its invoice shows, what was (or would be) published."""

    payment_link_id: str
    account_id: str
    invoice_status: str | None
    events: list[str]
    note: str = ""


class Reconciler:
    def __init__(
        self,
        *,
        sagas: SagaQueries,
        lifecycles: LifecycleStore,
        billing: Billing,
        lifecycle: LinkLifecycle,
        policy: RetryPolicy,
        clock: Clock,
    ) -> None:
        self._sagas = sagas
        self._lifecycles = lifecycles
        self._billing = billing
        self._lifecycle = lifecycle
        self._policy = policy
        self._clock = clock

    async def links(
        self,
        *,
        since: datetime | None,
        account_id: str | None = None,
        due_before: date | None = None,
        limit: int,
        skip_overdue: bool = False,
    ) -> list[SagaRecord]:
        """Created links (oldest first) that may still change: their lifecycle is not final (and, with
        ``skip_overdue``, not yet flagged overdue: the scan re-reads none of those from Stripe)."""
        created = await self._sagas.find_created(account_id=account_id, since=since, due_before=due_before, limit=limit)
        open_links = []
        for saga in created:
            record = await self._lifecycles.load(saga.payment_link_id)
            if record is None or not (record.is_final or (skip_overdue and record.overdue)):
                open_links.append(saga)
        return open_links

    async def check(self, saga: SagaRecord, source: Source, tally: Tally, *, dry_run: bool = False) -> Finding:
        """Reads the link's invoice and, unless ``dry_run``, applies it; never raises for one link."""
        created = saga.result
        assert isinstance(created, PaymentLinkCreated), "links() returns created sagas only"
        fields = {"payment_link_id": saga.payment_link_id, "correlation_id": created.correlation_id}
        # One trace per link checked; its lines carry the link's ids, like the worker's (consumer.tracing).
        with tracing.work_span(f"reconcile {source.value}", None, fields, kind=SpanKind.INTERNAL):
            return await self._check(saga, created, source, tally, dry_run=dry_run)

    async def _check(
        self, saga: SagaRecord, created: PaymentLinkCreated, source: Source, tally: Tally, *, dry_run: bool
    ) -> Finding:
        context = {"payment_link_id": saga.payment_link_id, "account_id": saga.account_id, "source": source.value}
        tally.checked += 1
        try:
            snapshot = await self._policy.run(
                lambda: self._billing.retrieve_invoice(created.stripe_account, created.invoice_id), context
            )
            if snapshot is None:
                tally.missing += 1
                return Finding(saga.payment_link_id, saga.account_id, None, [], "invoice not found in Stripe")
            observation = Observation(
                snapshot=snapshot.model_copy(update={"payment_link_id": saga.payment_link_id}),
                stripe_account=created.stripe_account,
                source=source,
                occurred_at=self._clock.now(),
            )
            if dry_run:
                return Finding(saga.payment_link_id, saga.account_id, snapshot.status, [], "dry run")
            observed = await self._policy.run(lambda: self._lifecycle.observe(observation), context)
        except PaylinkError as error:
            tally.failed += 1
            log.warning("could not reconcile a link", extra={**context, "error": error.message})
            return Finding(saga.payment_link_id, saga.account_id, None, [], f"failed: {error.message}")
        return self._count(saga, snapshot.status, observed, tally, context)

    @staticmethod
    def _count(saga: SagaRecord, status: str, observed: Observed, tally: Tally, context: dict[str, str]) -> Finding:
        kinds: list[str] = [event.event_type for event in observed.events]
        for event in observed.events:
            tally.events[event.event_type] = tally.events.get(event.event_type, 0) + 1
            metrics.LIFECYCLE_EVENTS.labels(event.event_type, event.source.value).inc()
        if observed.outcome is Outcome.IGNORED:
            tally.missing += 1
        elif not kinds:
            tally.unchanged += 1
        if kinds:
            log.info("lifecycle events published", extra={**context, "events": ",".join(kinds)})
        return Finding(saga.payment_link_id, saga.account_id, status, kinds, observed.reason)


class OverdueScan:
    """One pass of the overdue scan: links past their due date, checked against Stripe."""

    def __init__(self, reconciler: Reconciler, clock: Clock, *, batch: int = 1000) -> None:
        self._reconciler = reconciler
        self._clock = clock
        self._batch = batch

    async def run_once(self, on_finding: Callable[[Finding], None] | None = None) -> Tally:
        tally = Tally()
        today = self._clock.now().date()
        for saga in await self._reconciler.links(since=None, due_before=today, limit=self._batch, skip_overdue=True):
            finding = await self._reconciler.check(saga, Source.SCAN, tally)
            if on_finding is not None:
                on_finding(finding)
        if tally.checked:
            log.info("overdue scan done", extra={"summary": tally.summary()})
        return tally
