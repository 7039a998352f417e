"""Translation of stripe-python's exceptions into the domain's error taxonomy.

The adapter classifies; the saga decides what to do. Mapping:
- ``due_date`` rejected → ``invalid_due_date``; an unknown price → ``price_not_found``;
  any other invalid request → ``stripe_invalid_request`` (permanent);
- 403 on the connected account → ``stripe_permission_denied`` (permanent);
- 429, 409 (lock timeout), 5xx, timeouts, connection errors → retryable, unless Stripe says
  ``Stripe-Should-Retry: false``; ``Stripe-Should-Retry: true`` makes any error retryable;
- 401 (the platform key) → retryable: it is an operator's mistake, not the request's, so the request
  should stay replayable once the key is fixed rather than fail for good;
- an idempotency conflict (a key reused with other parameters, 400) → ``stripe_invalid_request``
  (permanent), as the ``Billing`` port says: keys are derived from the parameters (the customer key
  hashes them), so a conflict is a bug that no retry cures; a key still in use by a concurrent
  request (409) stays retryable.
Messages keep Stripe's text (bounded, secrets masked) so operators see what Stripe objected to.
A ``Retry-After`` header (seconds or an HTTP date) becomes ``RetryableError.retry_after_s``: the worker
waits at least that long, and the adapter pauses the account's rate limiter for as long.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

import stripe

from domain.errors import PaylinkError, PermanentError, Reason, RetryableError

_SECRET = re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9_*]+")


class StripeObjectMissing(PermanentError):
    """Stripe answered 404 ``resource_missing`` for an object other than a price."""


def translate(error: stripe.StripeError, operation: str) -> PaylinkError:
    should_retry = (error.headers or {}).get("stripe-should-retry") or (error.headers or {}).get("Stripe-Should-Retry")
    text = _SECRET.sub("[redacted]", error.user_message or type(error).__name__)
    status = error.http_status
    described = f"Stripe {operation} failed ({status or 'no response'}): {text}"
    hint = retry_after_s(error)
    if should_retry == "true":
        return RetryableError(Reason.STRIPE_UNAVAILABLE, described, retry_after_s=hint)
    if isinstance(error, stripe.InvalidRequestError) and should_retry != "false" and status in (409, 429):
        return RetryableError(Reason.STRIPE_UNAVAILABLE, described, retry_after_s=hint)
    if isinstance(error, stripe.InvalidRequestError):
        reason = _invalid_request_reason(error)
        if error.code == "resource_missing" and reason is Reason.STRIPE_INVALID_REQUEST:
            return StripeObjectMissing(reason, described)
        return PermanentError(reason, described)
    if isinstance(error, stripe.PermissionError):
        return PermanentError(Reason.STRIPE_PERMISSION_DENIED, described)
    if should_retry == "false":
        return PermanentError(Reason.STRIPE_INVALID_REQUEST, described)
    if isinstance(
        error,
        stripe.RateLimitError | stripe.APIConnectionError | stripe.APIError | stripe.AuthenticationError,
    ):
        return RetryableError(Reason.STRIPE_UNAVAILABLE, described, retry_after_s=hint)
    if status is not None and (status >= 500 or status in (409, 429)):
        return RetryableError(Reason.STRIPE_UNAVAILABLE, described, retry_after_s=hint)
    return PermanentError(Reason.STRIPE_INVALID_REQUEST, described)


MAX_RETRY_AFTER_S = 60.0


def retry_after_s(error: stripe.StripeError) -> float | None:
    """Stripe's ``Retry-After`` (delta seconds or an HTTP date), bounded to a minute; None when absent."""
    headers = error.headers or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _invalid_request_reason(error: stripe.InvalidRequestError) -> Reason:
    param = error.param or ""
    if param.startswith("due_date") or param.startswith("days_until_due"):
        return Reason.INVALID_DUE_DATE
    if error.code == "resource_missing" and ("price" in param or "No such price" in (error.user_message or "")):
        return Reason.PRICE_NOT_FOUND
    return Reason.STRIPE_INVALID_REQUEST
