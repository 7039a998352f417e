"""A cancel's persisted progress: one ``CancelRecord`` per cancel ``event_id`` (= ``cancel_request_id``).

Status machine::

    start ─▶ running ── void + observe ──────────▶ done     (result: PaymentLinkVoided)
               ├──── link not cancellable ───────▶ done     (result: PaymentLinkCancelRejected)
               └──── retries ran out ────────────▶ gave_up  (result: rejected, retryable)

    reopened_for_replay: gave_up, or done with a retryable rejection ─▶ running, ``attempt`` + 1, no result

``void_started`` is saved (``voiding``) before the void call and kept through giving up and replays: a
cancel resumed after a crash there calls the void again with the same idempotency key (Stripe answers
with the first void) and never reads its own void as "already void". A ``done`` cancel re-reports its
stored result on every redelivery: a duplicate cancel voids nothing and re-publishes that result with
its ``event_id``. ``version`` is the
store's (optimistic concurrency, as for sagas).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from domain.cancel_events import PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.lifecycle_events import PaymentLinkVoided
from domain.saga_record import TIMESTAMP_FORMAT


class CancelStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    GAVE_UP = "gave_up"


CancelResult = PaymentLinkVoided | PaymentLinkCancelRejected


class CancelRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    cancel_request_id: str
    request: dict[str, Any] = Field(description="the PaymentLinkCancelRequested, JSON form")
    payment_link_id: str
    account_id: str
    contact_id: str
    status: CancelStatus = CancelStatus.RUNNING
    attempt: int = Field(1, description="1 for the first run, +1 per replay")
    void_started: bool = Field(False, description="the void call may have been made (its key is the cancel's)")
    result: dict[str, Any] | None = Field(None, description="the result event, JSON form, once there is one")
    version: int = 0
    created_at: datetime
    updated_at: datetime

    @classmethod
    def start(cls, cancel: PaymentLinkCancelRequested, now: datetime) -> CancelRecord:
        return cls(
            cancel_request_id=cancel.event_id,
            request=cancel.model_dump(mode="json"),
            payment_link_id=cancel.payment_link_id,
            account_id=cancel.account_id,
            contact_id=cancel.contact_id,
            created_at=now,
            updated_at=now,
        )

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> CancelRecord:
        """Reads ``to_document()`` output (extra keys, such as a store's ``_id``, are ignored)."""
        return cls.model_validate(document)

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @field_serializer("created_at", "updated_at", when_used="json")
    def _fixed_width_utc(self, moment: datetime) -> str:
        return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)

    @property
    def has_result(self) -> bool:
        return self.status in (CancelStatus.DONE, CancelStatus.GAVE_UP)

    def request_event(self) -> PaymentLinkCancelRequested:
        return PaymentLinkCancelRequested.model_validate(self.request, strict=False)

    def result_event(self) -> CancelResult:
        assert self.result is not None, "a cancel with a result stores it"
        if self.result["event_type"] == "PaymentLinkVoided":
            return PaymentLinkVoided.model_validate(self.result)
        return PaymentLinkCancelRejected.model_validate(self.result)

    @property
    def replayable(self) -> bool:
        """Gave up, or rejected retryably (e.g. the link's request had failed retryably and may be replayed)."""
        if self.status is CancelStatus.GAVE_UP:
            return True
        result = self.result_event() if self.status is CancelStatus.DONE else None
        return isinstance(result, PaymentLinkCancelRejected) and result.retryable

    def _with(self, now: datetime, **changes: Any) -> CancelRecord:
        return CancelRecord.model_validate({**self.model_dump(), **changes, "updated_at": now})

    def voiding(self, now: datetime) -> CancelRecord:
        """The checks passed: the void call comes next (``void_started``)."""
        self._require_running()
        return self._with(now, void_started=True)

    def done(self, result: CancelResult, now: datetime) -> CancelRecord:
        """running → done, with the result every redelivery re-reports."""
        self._require_running()
        return self._with(now, status=CancelStatus.DONE, result=result.model_dump(mode="json"))

    def gave_up(self, result: PaymentLinkCancelRejected, now: datetime) -> CancelRecord:
        """running → gave_up, progress kept, so a replay resumes where it stopped."""
        self._require_running()
        return self._with(now, status=CancelStatus.GAVE_UP, result=result.model_dump(mode="json"))

    def reopened_for_replay(self, now: datetime) -> CancelRecord:
        """The record ``paylink replay`` runs again: running, ``attempt`` + 1, no result."""
        if not self.replayable:
            raise ValueError(f"cancel {self.cancel_request_id} is {self.status}, not replayable")
        return self._with(now, status=CancelStatus.RUNNING, attempt=self.attempt + 1, result=None)

    def _require_running(self) -> None:
        if self.status is not CancelStatus.RUNNING:
            raise ValueError(f"cancel {self.cancel_request_id} is {self.status}, not running")
