"""From raw Kafka bytes to a validated request, or to an actionable ``PermanentError``.

- ``parse_message(raw)`` dispatches on ``event_type``: a ``PaymentLinkCancelRequested`` goes to
  ``parse_cancel`` (any problem is ``invalid_event``), anything else to ``parse_request`` (so an unknown
  ``event_type`` is ``invalid_event``).
- ``parse_request(raw)`` → ``PaymentLinkRequested`` or ``PermanentError`` whose reason is
  ``invalid_line_items`` / ``invalid_due_date`` when only those rules failed, else ``invalid_event``
  (undecodable bytes, not JSON, missing fields, wrong types, bad metadata…).
- ``resolve_due_date(request, now)`` applies the rules that need a clock.
- ``validate_request(raw, now)`` is both: every check the worker makes before it calls Stripe. The other
  doors (``paylink publish``, ``paylink.client.send_request``) run exactly this, so they refuse what the
  worker would refuse, with the same reason.
- ``recover_identity(raw)`` salvages ``event_id`` (and account/contact/correlation ids) from a bad message,
  and ``failure_for_unparseable`` turns that into the ``PaymentLinkFailed(invalid_event)`` of the contract.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError

from domain.cancel_events import PaymentLinkCancelRequested
from domain.errors import PermanentError, Reason, excerpt, safe_message
from domain.events import MAX_ID_CHARS, PaymentLinkFailed, PaymentLinkRequested, Step

MAX_ERRORS_IN_MESSAGE = 5
MAX_DUE_DATE_DAYS_AHEAD = 5 * 365
# Due dates become noon UTC: that instant falls on the same calendar date from UTC-11 to UTC+11, so
# the invoice shows the requested date whatever the account's time zone.
DUE_TIME_OF_DAY = time(12, 0, tzinfo=UTC)
# Namespace of the deterministic event ids of failures for unparseable inputs (redelivery → same id).
UNPARSEABLE_NAMESPACE = uuid.UUID("6f1d8a52-3c4e-4b8e-9a57-2f0b7f5d9c11")

_LINE_ITEM_FIELDS = {"line_items"}
_DUE_DATE_FIELDS = {"due_date", "days_until_due"}
_DUE_DATE_ERROR_TYPES = {"due_date_choice"}
_REASON_PRIORITY = [Reason.INVALID_EVENT, Reason.INVALID_LINE_ITEMS, Reason.INVALID_DUE_DATE]
CANCEL_EVENT_TYPE = "PaymentLinkCancelRequested"
# A cancel names its type in the message; only then (or when JSON escapes could hide the name) is the
# message decoded twice, so requests pay nothing for the dispatch.
_CANCEL_HINTS = (CANCEL_EVENT_TYPE.encode(), b"\\u")


def parse_message(raw: bytes) -> PaymentLinkRequested | PaymentLinkCancelRequested:
    """A request or a cancel, by ``event_type``. Raises ``PermanentError`` (never anything else)."""
    if any(hint in raw for hint in _CANCEL_HINTS) and _event_type(raw) == CANCEL_EVENT_TYPE:
        return parse_cancel(raw)
    return parse_request(raw)


def parse_cancel(raw: bytes) -> PaymentLinkCancelRequested:
    """Validates a cancel as strictly as a request. Raises ``PermanentError(invalid_event)``."""
    try:
        return PaymentLinkCancelRequested.model_validate_json(raw)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        described = "; ".join(_describe(problem) for problem in problems[:MAX_ERRORS_IN_MESSAGE])
        more = len(problems) - MAX_ERRORS_IN_MESSAGE
        suffix = f"; and {more} more problem(s)" if more > 0 else ""
        message = safe_message(f"invalid {CANCEL_EVENT_TYPE}: {described}{suffix}")
        raise PermanentError(Reason.INVALID_EVENT, message) from None


def _event_type(raw: bytes) -> object:
    document = _document(raw)
    return document.get("event_type") if document is not None else None


def _document(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def parse_request(raw: bytes) -> PaymentLinkRequested:
    """Validates a Kafka message value. Raises ``PermanentError`` (never anything else)."""
    try:
        return PaymentLinkRequested.model_validate_json(raw)
    except ValidationError as error:  # also what pydantic raises for undecodable or non-JSON bytes
        raise _permanent_error(error) from None


def _permanent_error(error: ValidationError) -> PermanentError:
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    reason = _reason_of(problems)
    described = "; ".join(_describe(problem) for problem in problems[:MAX_ERRORS_IN_MESSAGE])
    more = len(problems) - MAX_ERRORS_IN_MESSAGE
    suffix = f"; and {more} more problem(s)" if more > 0 else ""
    return PermanentError(reason, safe_message(f"invalid PaymentLinkRequested: {described}{suffix}"))


def _reason_of(problems: list[Any]) -> Reason:
    # The most fundamental problem wins: a broken envelope makes line items and due dates moot.
    kinds = {_kind_of(problem) for problem in problems} or {Reason.INVALID_EVENT}
    return min(kinds, key=_REASON_PRIORITY.index)


def _kind_of(problem: Any) -> Reason:
    location = problem["loc"]
    field = location[0] if location else None
    if problem["type"] == "missing" and len(location) == 1:
        return Reason.INVALID_EVENT
    if field in _LINE_ITEM_FIELDS:
        return Reason.INVALID_LINE_ITEMS
    if field in _DUE_DATE_FIELDS or problem["type"] in _DUE_DATE_ERROR_TYPES:
        return Reason.INVALID_DUE_DATE
    return Reason.INVALID_EVENT


def _describe(problem: Any) -> str:
    location = list(problem["loc"])
    # line_items.<i>.<tag>.<field>: the union's tag ("price"/"amount") is noise for the producer.
    if len(location) > 3 and location[0] == "line_items" and location[2] in ("price", "amount"):
        del location[2]
    where = ".".join(str(part) for part in location) or "request"
    return f"{excerpt(where, 80)}: {excerpt(problem['msg'], 200)}"


def resolve_due_date(request: PaymentLinkRequested, now: datetime) -> date:
    """The invoice's due date, computed once at the saga's first start (the saga persists it).

    Raises ``PermanentError(invalid_due_date)`` unless ``due_date`` is after today (UTC) and at most
    five years ahead.
    """
    today = now.astimezone(UTC).date()
    if request.due_date is None:
        assert request.days_until_due is not None  # guaranteed by the model's one-of rule
        return today + timedelta(days=request.days_until_due)
    if request.due_date <= today:
        raise PermanentError(
            Reason.INVALID_DUE_DATE,
            f"due_date {request.due_date.isoformat()} must be after today ({today.isoformat()}, UTC)",
        )
    if request.due_date > today + timedelta(days=MAX_DUE_DATE_DAYS_AHEAD):
        raise PermanentError(
            Reason.INVALID_DUE_DATE,
            f"due_date {request.due_date.isoformat()} must be at most {MAX_DUE_DATE_DAYS_AHEAD} days ahead",
        )
    return request.due_date


def validate_request(raw: bytes, now: datetime) -> PaymentLinkRequested:
    """``parse_request`` then ``resolve_due_date``: raises the ``PermanentError`` the worker's saga would
    end with, before anything is sent."""
    request = parse_request(raw)
    resolve_due_date(request, now)
    return request


def due_timestamp(due_date: date) -> int:
    """Unix timestamp Stripe receives as the invoice's ``due_date`` (noon UTC of that day)."""
    return int(datetime.combine(due_date, DUE_TIME_OF_DAY).timestamp())


@dataclass(frozen=True)
class RecoveredIdentity:
    """What could be salvaged from an unparseable message (each field only if a short string)."""

    event_id: str
    account_id: str | None = None
    contact_id: str | None = None
    correlation_id: str | None = None
    event_type: str | None = None
    payment_link_id: str | None = None  # a cancel's


def recover_identity(raw: bytes) -> RecoveredIdentity | None:
    """The identifying fields of a bad message, or None when no usable ``event_id`` is in it."""
    document = _document(raw)
    if document is None:
        return None
    event_id = _short_string(document.get("event_id"))
    if event_id is None:
        return None
    return RecoveredIdentity(
        event_id=_canonical_uuid(event_id),
        account_id=_short_string(document.get("account_id")),
        contact_id=_short_string(document.get("contact_id")),
        correlation_id=_short_string(document.get("correlation_id")),
        event_type=_short_string(document.get("event_type")),
        payment_link_id=_short_string(document.get("payment_link_id")),
    )


def _short_string(value: object) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): no event, store or log can hold it
        return None
    return value


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def failure_for_unparseable(raw: bytes, error: PermanentError, now: datetime) -> PaymentLinkFailed | None:
    """The contract's result for input that failed ``parse_request``, or None without an ``event_id``.

    Its ``event_id`` is derived from the request's, so a redelivered bad message yields the same result
    event and the idempotent outbox stores it once.
    """
    identity = recover_identity(raw)
    if identity is None:
        return None
    return PaymentLinkFailed(
        event_id=str(uuid.uuid5(UNPARSEABLE_NAMESPACE, identity.event_id)),
        occurred_at=now,
        payment_link_id=identity.event_id,
        correlation_id=identity.correlation_id,
        account_id=identity.account_id,
        contact_id=identity.contact_id,
        reason=error.reason,
        message=error.message,
        retryable=False,
        failed_step=Step.VALIDATE,
        compensated=False,
        attempt=1,
    )
