"""Running a cancel in the worker and in ``paylink replay``: the one retry policy, then giving up.

``run_cancel_with_retries`` is to cancels what ``run_with_retries`` is to sagas: transient faults (Stripe
down, the link's saga still running) are retried under the shared ``RetryPolicy``; when retries run out
the cancel ends ``PaymentLinkCancelRejected(stripe_unavailable, retryable=true)``, replayable.
``report_cancel`` counts and logs its outcome once (a re-reported result counts as a duplicate).
"""

from __future__ import annotations

import logging
from typing import Any

from consumer import metrics
from consumer.app.retry import RetryPolicy
from domain.cancel import CancelOutcome, LinkCanceller
from domain.cancel_events import PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.errors import RetryableError

log = logging.getLogger("paylink.processing")


async def run_cancel_with_retries(
    canceller: LinkCanceller, policy: RetryPolicy, cancel: PaymentLinkCancelRequested
) -> CancelOutcome:
    try:
        return await policy.run(lambda: canceller.run_outcome(cancel), cancel_identity(cancel))
    except RetryableError as error:
        return await canceller.give_up_outcome(cancel, error, attempts=policy.attempts)


def cancel_identity(cancel: PaymentLinkCancelRequested) -> dict[str, Any]:
    """The ids every log record about ``cancel`` carries."""
    return {
        "cancel_request_id": cancel.event_id,
        "payment_link_id": cancel.payment_link_id,
        "correlation_id": cancel.correlation_id,
        "account_id": cancel.account_id,
    }


def outcome_label(outcome: CancelOutcome) -> str:
    return "rejected" if isinstance(outcome.result, PaymentLinkCancelRejected) else "voided"


def report_cancel(cancel: PaymentLinkCancelRequested, outcome: CancelOutcome) -> None:
    result, label = outcome.result, outcome_label(outcome)
    context = {**cancel_identity(cancel), "outcome": label, "result_event_id": result.event_id}
    if outcome.re_reported:
        metrics.DUPLICATES.labels(label).inc()
        log.info("duplicate cancel; result re-reported", extra=context)
        return
    if isinstance(result, PaymentLinkCancelRejected):
        metrics.CANCELS.labels(label, result.reason.value).inc()
        log.info(
            "cancel rejected",
            extra={**context, "reason": result.reason.value, "retryable": result.retryable, "attempt": result.attempt},
        )
        return
    metrics.CANCELS.labels(label, "").inc()
    log.info("payment link voided", extra={**context, "invoice_id": result.invoice_id})
