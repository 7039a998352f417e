"""The saga's persisted state: one ``SagaRecord`` per request ``event_id`` (= ``payment_link_id``).

Each step's outcome is written here before the next step starts, so a redelivered or replayed request
resumes from the first unfinished step. ``to_document()`` gives a plain dict of JSON/BSON-friendly
values (str/int/bool/list/dict/None; dates as ISO strings, timestamps as fixed-width UTC ISO strings
that sort chronologically as strings); ``from_document()`` reads it back and ignores unknown keys
(e.g. Mongo's ``_id``).

Status machine::

    running ──▶ created                      (terminal)
       │  ├───▶ failed                       (terminal; replayable when failure.retryable, or restartable)
       │  └───▶ compensation_failed          (terminal until replayed: compensation is retried)
       ▲                 │
       └── prepare_replay┘

A ``running`` record with ``failure`` set has failed permanently and still owes its compensation.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from domain.billing import FinalizedInvoice
from domain.errors import Reason
from domain.events import PaymentLinkRequested, ResultEvent, Step
from domain.keys import InvoiceKeys

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class SagaStatus(StrEnum):
    RUNNING = "running"
    CREATED = "created"
    FAILED = "failed"
    COMPENSATION_FAILED = "compensation_failed"


TERMINAL_STATUSES = frozenset({SagaStatus.CREATED, SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED})


class SagaFailure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    reason: Reason
    message: str
    retryable: bool
    failed_step: Step
    compensated: bool = False
    compensation_error: str | None = None


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
    due_date: date | None = Field(None, description="computed once, at the first start")
    stripe_account: str | None = None
    description: str | None = Field(None, description="the invoice description, resolved at start")
    customer_id: str | None = None
    invoice_id: str | None = None
    items_added: int = Field(0, description="line items [0, items_added) are on the draft")
    invoice: FinalizedInvoice | None = None
    shortened: bool = Field(False, description="the shortener was asked (short_url may still be null)")
    short_url: str | None = None
    failure: SagaFailure | None = None
    result: ResultEvent | None = Field(None, description="the terminal event; re-appended on duplicates")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def start(cls, request: PaymentLinkRequested, now: datetime) -> SagaRecord:
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
        return cls.model_validate(document)

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

    def request_event(self) -> PaymentLinkRequested:
        return PaymentLinkRequested.model_validate(self.request, strict=False)

    def advance(self, now: datetime, **changes: Any) -> SagaRecord:
        """A copy with ``changes`` applied and ``updated_at`` = ``now`` (``version`` is the store's)."""
        return self.model_copy(update={**changes, "updated_at": now})
