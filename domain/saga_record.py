"""The saga's persisted state: one ``SagaRecord`` per request ``event_id`` (= ``payment_link_id``).

Each step's outcome is written here before the next step starts, so a redelivered or replayed request
resumes from the first unfinished step. ``to_document()`` gives a plain dict of JSON/BSON-friendly
values (str/int/bool/list/dict/None; dates as ISO strings, timestamps as fixed-width UTC ISO strings
that sort chronologically as strings); ``from_document()`` reads it back and ignores unknown keys
(e.g. Mongo's ``_id``).

Status machine::

    start ─▶ running ──────────────────────────▶ created              (terminal)
               │  └── give_up, or a step fails ─▶ failed               (terminal)
               │      with no invoice to undo
               ▼ a step fails permanently
          compensating ─── invoice undone ─────▶ failed               (terminal, compensated)
               └── undo fails, or give_up ─────▶ compensation_failed  (terminal until replayed)

    reopened_for_replay:  failed (retryable)    ─▶ running       same keys, resumes
                          failed (permanent)    ─▶ running       started_over: new keys (restarts + 1)
                          compensation_failed   ─▶ compensating  the undo is retried
                          running, compensating ─▶ itself        (abandoned) resumes as recorded

Changes go through the named transitions below (``with_…``, ``compensating``, ``created``, ``ended``,
``started_over``, ``reopened_for_replay``). Each takes ``now``, sets ``updated_at`` to it and returns a
new record built through pydantic validation: a wrong value fails at the transition, never in the store.
``with_history`` appends step history (``domain.saga_history``) without touching ``updated_at``.
``version`` is the store's. A ``running`` record never has a ``failure``; a ``compensating`` one always has.

Migration (documents stored before the ``compensating`` status existed): ``from_document`` reads
``{"status": "running", "failure": {...}}`` — a permanent failure that still owed its compensation — as
``compensating``; every other stored document loads unchanged (``history``, added later, loads empty). A
document is rewritten in the new form at its saga's next save. The reverse does not hold: a version
without ``compensating`` cannot read a document saved as ``compensating`` (mind rollbacks).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from domain.billing import FinalizedInvoice
from domain.errors import Reason
from domain.events import (
    STORED_REQUEST,
    PaymentLinkCreated,
    PaymentLinkFailed,
    PaymentLinkRequested,
    ResultEvent,
    Step,
)
from domain.keys import InvoiceKeys
from domain.saga_history import EntryKind, HistoryEntry, SagaHistory

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    CREATED = "created"
    FAILED = "failed"
    COMPENSATION_FAILED = "compensation_failed"


TERMINAL_STATUSES = frozenset({SagaStatus.CREATED, SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED})
IN_FLIGHT_STATUSES = frozenset({SagaStatus.RUNNING, SagaStatus.COMPENSATING})
FAILED_STATUSES = frozenset({SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED})


class SagaFailure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    reason: Reason
    message: str
    retryable: bool
    failed_step: Step
    compensated: bool = False
    compensation_error: str | None = None

    def undone(self, compensated: bool) -> SagaFailure:
        """The failure after its compensation ran: ``compensated`` says whether there was anything to undo."""
        return SagaFailure.model_validate({**dict(self), "compensated": compensated})

    def undo_failed(self, problem: str) -> SagaFailure:
        """The failure after its compensation failed: not compensated, ``problem`` says why."""
        return SagaFailure.model_validate({**dict(self), "compensated": False, "compensation_error": problem})

    def undo_retried(self) -> SagaFailure:
        """The failure as a replay re-opens it: the compensation error is cleared, the undo is owed again."""
        return SagaFailure.model_validate({**dict(self), "compensation_error": None})


def _produced_by(step: Step, default: Any, description: str | None = None) -> Any:
    """A field written by ``step`` (and reset to ``default`` when a saga starts over)."""
    return Field(default, description=description, json_schema_extra={"produced_by": step.value})


class SagaRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    payment_link_id: str
    request: dict[str, Any] = Field(description="the PaymentLinkRequested, JSON form")
    account_id: str
    contact_id: str
    status: SagaStatus = SagaStatus.RUNNING
    version: int = Field(0, description="optimistic concurrency: the store bumps it on every save")
    attempt: int = Field(1, description="1 for the first run, +1 per replay")
    restarts: int = Field(0, description="replays that started over after compensation (in the keys)")
    due_date: date | None = _produced_by(Step.VALIDATE, None, "computed once, at the first start")
    stripe_account: str | None = _produced_by(Step.CUSTOMER, None)
    description: str | None = _produced_by(Step.CUSTOMER, None, "the invoice description, resolved at start")
    customer_id: str | None = _produced_by(Step.CUSTOMER, None)
    invoice_id: str | None = _produced_by(Step.DRAFT, None)
    items_added: int = _produced_by(Step.ITEMS, 0, "line items [0, items_added) are on the draft")
    invoice: FinalizedInvoice | None = _produced_by(Step.FINALISE, None)
    shortened: bool = _produced_by(Step.SHORTEN, False, "the shortener was asked (short_url may still be null)")
    short_url: str | None = _produced_by(Step.SHORTEN, None)
    failure: SagaFailure | None = None
    result: ResultEvent | None = Field(None, description="the terminal event; re-appended on duplicates")
    history: SagaHistory = Field(default_factory=SagaHistory, description="bounded (domain.saga_history)")
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="after")
    def _failure_matches_status(self) -> SagaRecord:
        if self.status is SagaStatus.RUNNING and self.failure is not None:
            raise ValueError("a running saga has no failure (a failed one is compensating)")
        if self.status is SagaStatus.COMPENSATING and self.failure is None:
            raise ValueError("a compensating saga has the failure it compensates")
        if self.status in IN_FLIGHT_STATUSES and self.result is not None:
            raise ValueError(f"a {self.status} saga has no result yet")
        return self

    # --- reading and writing ------------------------------------------------------------------------------

    @classmethod
    def start(cls, request: PaymentLinkRequested, now: datetime) -> SagaRecord:
        """A new saga, ``running``, at its first step."""
        return cls(
            payment_link_id=request.event_id,
            request=request.model_dump(mode="json"),
            account_id=request.account_id,
            contact_id=request.contact_id,
            created_at=now,
            updated_at=now,
        )

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> SagaRecord:
        """Reads ``to_document()`` output, or a document stored by an older version (see the migration)."""
        return cls.model_validate(_migrated(document))

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @field_serializer("created_at", "updated_at")
    def _fixed_width_utc(self, moment: datetime) -> str:
        return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def keys(self) -> InvoiceKeys:
        return InvoiceKeys(self.payment_link_id, self.restarts)

    @property
    def line_count(self) -> int:
        return len(self.request["line_items"])

    def request_event(self) -> PaymentLinkRequested:
        return PaymentLinkRequested.model_validate(self.request, strict=False, context=STORED_REQUEST)

    @classmethod
    def step_fields(cls) -> dict[str, Step]:
        """Every field a forward step writes, with its step (read from the model's field declarations)."""
        produced: dict[str, Step] = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and "produced_by" in extra:
                produced[name] = Step(str(extra["produced_by"]))
        return produced

    def _with(self, now: datetime, **changes: Any) -> SagaRecord:
        """Every transition ends here: a new record, validated by pydantic, ``updated_at`` = ``now``."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self).model_validate({**fields, **changes, "updated_at": now})

    def with_history(self, added: Sequence[HistoryEntry]) -> SagaRecord:
        """The record with ``added`` appended to its bounded history; ``updated_at`` unchanged: the
        entries ride along with the transition they are saved with."""
        if not added:
            return self
        return self._with(self.updated_at, history=self.history.plus(added))

    # --- forward steps (status stays running) -------------------------------------------------------------

    def with_due_date(self, due_date: date, now: datetime) -> SagaRecord:
        """validate: the due date, resolved once and then reused by every retry."""
        return self._with(now, due_date=due_date)

    def with_customer(self, stripe_account: str, description: str, customer_id: str, now: datetime) -> SagaRecord:
        """customer: the connected account, the invoice description and the linked Stripe customer."""
        return self._with(now, stripe_account=stripe_account, description=description, customer_id=customer_id)

    def with_draft(self, invoice_id: str, now: datetime) -> SagaRecord:
        """draft: the draft invoice's id (the invoice the compensation undoes)."""
        return self._with(now, invoice_id=invoice_id)

    def with_items_added(self, items_added: int, now: datetime) -> SagaRecord:
        """items: line items ``[0, items_added)`` are on the draft. Only grows, up to the request's lines."""
        if not self.items_added < items_added <= self.line_count:
            raise ValueError(f"items_added {items_added} not in ({self.items_added}, {self.line_count}]")
        return self._with(now, items_added=items_added)

    def with_finalised(self, invoice: FinalizedInvoice, now: datetime) -> SagaRecord:
        """finalise: the finalised invoice, as the result event reports it."""
        return self._with(now, invoice=invoice)

    def with_short_url(self, short_url: str | None, now: datetime) -> SagaRecord:
        """shorten: the shortener was asked; ``short_url`` is None when it had no answer."""
        return self._with(now, shortened=True, short_url=short_url)

    # --- endings -------------------------------------------------------------------------------------------

    def compensating(self, failure: SagaFailure, now: datetime) -> SagaRecord:
        """running → compensating: a step failed permanently and the invoice is still to undo."""
        self._require(SagaStatus.RUNNING)
        return self._with(now, status=SagaStatus.COMPENSATING, failure=failure)

    def created(self, result: PaymentLinkCreated, now: datetime) -> SagaRecord:
        """running → created, with the result every duplicate delivery re-reports."""
        self._require(SagaStatus.RUNNING)
        return self._with(now, status=SagaStatus.CREATED, result=result)

    def ended(self, status: SagaStatus, failure: SagaFailure, result: PaymentLinkFailed, now: datetime) -> SagaRecord:
        """running or compensating → ``failed`` / ``compensation_failed``, with the failure and its result."""
        self._require(SagaStatus.RUNNING, SagaStatus.COMPENSATING)
        if status not in FAILED_STATUSES:
            raise ValueError(f"a saga ends failed or compensation_failed, not {status}")
        return self._with(now, status=status, failure=failure, result=result)

    # --- replay ----------------------------------------------------------------------------------------------

    def reopened_for_replay(self, now: datetime) -> SagaRecord:
        """The record ``paylink replay`` runs again: ``attempt`` + 1, no result, and by status
        (see the machine above) resumed, started over, its compensation owed again, or as recorded."""
        if self.status is SagaStatus.CREATED:
            raise ValueError("a created saga is not replayed")
        entry = HistoryEntry(
            kind=EntryKind.REPLAYED, step="saga", attempt=self.attempt + 1, started_at=now, ended_at=now
        )
        reopened = self._with(now, attempt=self.attempt + 1, result=None, history=self.history.plus([entry]))
        if self.status is SagaStatus.COMPENSATION_FAILED and self.failure is not None:
            return reopened._with(now, status=SagaStatus.COMPENSATING, failure=self.failure.undo_retried())
        if self.status is SagaStatus.FAILED and self.failure is not None and self.failure.retryable:
            return reopened._with(now, status=SagaStatus.RUNNING, failure=None)
        if self.status is SagaStatus.FAILED:
            return reopened.started_over(now)
        return reopened  # abandoned running or compensating: resumes as recorded (same keys, owed undo kept)

    def started_over(self, now: datetime) -> SagaRecord:
        """``running`` from the first step with new invoice keys (``restarts`` + 1): every field a step
        writes (``step_fields``) back to its default, no failure, no result."""
        reset = {name: type(self).model_fields[name].get_default() for name in self.step_fields()}
        return self._with(
            now, **reset, status=SagaStatus.RUNNING, restarts=self.restarts + 1, failure=None, result=None
        )

    def _require(self, *statuses: SagaStatus) -> None:
        if self.status not in statuses:
            raise ValueError(f"saga {self.payment_link_id} is {self.status}, not {' or '.join(statuses)}")


def _migrated(document: dict[str, Any]) -> dict[str, Any]:
    """The migration rule: a stored ``running`` document with a ``failure`` is ``compensating``."""
    if document.get("status") == SagaStatus.RUNNING.value and document.get("failure") is not None:
        return {**document, "status": SagaStatus.COMPENSATING.value}
    return document
