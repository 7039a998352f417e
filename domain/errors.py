"""The error taxonomy: every failure is either worth retrying or not, and carries a contract ``reason``.

- ``RetryableError``: a retry with backoff may cure it (network, 429, 5xx, Mongo failover, a lost
  optimistic-concurrency race). The saga's state is kept; the worker retries and, when its retry policy
  runs out, calls ``PaymentLinkSaga.give_up``.
- ``PermanentError``: retrying the same request cannot help (bad input, unknown price, permission
  denied). The saga compensates and ends with ``PaymentLinkFailed(retryable=false)``.

Messages end up in result events and logs, so they must be actionable, never contain secrets and never
echo large inputs: build them with ``excerpt`` for anything that came from outside.
"""

from __future__ import annotations

from enum import StrEnum

MAX_MESSAGE_CHARS = 1000
MAX_EXCERPT_CHARS = 60


class Reason(StrEnum):
    """``PaymentLinkFailed.reason`` values, exactly as in the contract (DESIGN.md)."""

    INVALID_EVENT = "invalid_event"
    CONTACT_NOT_FOUND = "contact_not_found"
    CONTACT_MISSING_EMAIL = "contact_missing_email"
    ACCOUNT_NOT_CONNECTED = "account_not_connected"
    INVALID_LINE_ITEMS = "invalid_line_items"
    INVALID_DUE_DATE = "invalid_due_date"
    PRICE_NOT_FOUND = "price_not_found"
    STRIPE_INVALID_REQUEST = "stripe_invalid_request"
    STRIPE_PERMISSION_DENIED = "stripe_permission_denied"
    STRIPE_UNAVAILABLE = "stripe_unavailable"
    INTERNAL_ERROR = "internal_error"


def excerpt(value: object, limit: int = MAX_EXCERPT_CHARS) -> str:
    """``repr``-like, bounded rendering of an outside value for error messages."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Bounds a message's length so a huge input can never flood a result event or a log line."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


class PaylinkError(Exception):
    """Base of the taxonomy: ``reason`` (contract value) and a bounded, secret-free ``message``."""

    retryable: bool = False

    def __init__(self, reason: Reason | str, message: str) -> None:
        self.reason = Reason(reason)
        self.message = safe_message(message)
        super().__init__(f"{self.reason}: {self.message}")


class RetryableError(PaylinkError):
    """Transient: retry with backoff. Use ``stripe_unavailable`` for Stripe, ``internal_error`` for stores.

    ``retry_after_s``: the dependency's own hint (e.g. Stripe's ``Retry-After`` on a 429); the worker
    waits at least that long before the next attempt.
    """

    retryable = True

    def __init__(
        self,
        reason: Reason | str = Reason.STRIPE_UNAVAILABLE,
        message: str = "",
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason, message or "a dependency is temporarily unavailable")
        self.retry_after_s = retry_after_s


class PermanentError(PaylinkError):
    """Retrying the same request cannot succeed."""


class ConcurrentUpdateError(RetryableError):
    """A saga record was written by someone else since it was read (stale ``version``): reload, retry."""

    def __init__(self, payment_link_id: str, expected_version: int) -> None:
        super().__init__(
            Reason.INTERNAL_ERROR,
            f"saga {excerpt(payment_link_id)} changed concurrently (expected version {expected_version})",
        )
        self.payment_link_id = payment_link_id
        self.expected_version = expected_version


class ReplayRefusedError(Exception):
    """``prepare_replay`` was asked for a saga that is unknown, still running or already succeeded."""
