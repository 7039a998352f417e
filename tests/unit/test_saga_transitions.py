"""The saga record's named transitions: typed, validated, clocked by ``now``; and the status machine."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from domain.billing import FinalizedInvoice
from domain.errors import Reason
from domain.events import PaymentLinkCreated, PaymentLinkFailed, Step
from domain.saga_history import EntryKind, HistoryEntry, SagaHistory
from domain.saga_record import SagaFailure, SagaRecord, SagaStatus
from tests.fakes.world import REQUEST_ID, make_request

T0 = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)
INVOICE = FinalizedInvoice(
    id="in_1",
    number="INV-1",
    status="open",
    amount_due=8000,
    currency="usd",
    hosted_invoice_url="https://invoice.stripe.test/in_1",
    invoice_pdf=None,
    due_date=1895140800,
)
PERMANENT = SagaFailure(reason=Reason.PRICE_NOT_FOUND, message="no price", retryable=False, failed_step=Step.ITEMS)
RETRYABLE = SagaFailure(reason=Reason.STRIPE_UNAVAILABLE, message="500", retryable=True, failed_step=Step.FINALISE)
# A replay leaves its mark in the step history (every other field is as the status machine says).
REPLAYED = SagaHistory(
    entries=(HistoryEntry(kind=EntryKind.REPLAYED, step="saga", attempt=2, started_at=LATER, ended_at=LATER),)
)


def fresh() -> SagaRecord:
    return SagaRecord.start(make_request(), T0)


def finished_steps() -> SagaRecord:
    record = fresh().with_due_date(date(2030, 1, 29), T0).with_customer("acct_1", "Invoice", "cus_1", T0)
    record = record.with_draft("in_1", T0).with_items_added(1, T0).with_items_added(2, T0)
    return record.with_finalised(INVOICE, T0).with_short_url("https://pl.test/x", T0)


def failed_result(record: SagaRecord, failure: SagaFailure) -> PaymentLinkFailed:
    return PaymentLinkFailed(
        event_id=str(uuid.uuid4()),
        occurred_at=T0,
        payment_link_id=record.payment_link_id,
        correlation_id="corr-1",
        account_id=record.account_id,
        contact_id=record.contact_id,
        reason=failure.reason,
        message=failure.message,
        retryable=failure.retryable,
        failed_step=failure.failed_step,
        compensated=failure.compensated,
        attempt=record.attempt,
    )


def created_result(record: SagaRecord) -> PaymentLinkCreated:
    assert record.invoice is not None and record.invoice.hosted_invoice_url and record.due_date
    return PaymentLinkCreated(
        event_id=str(uuid.uuid4()),
        occurred_at=T0,
        payment_link_id=record.payment_link_id,
        correlation_id="corr-1",
        account_id=record.account_id,
        contact_id=record.contact_id,
        stripe_account="acct_1",
        customer_id="cus_1",
        invoice_id="in_1",
        invoice_number="INV-1",
        status="open",
        amount_due=8000,
        currency="usd",
        due_date=record.due_date,
        hosted_invoice_url=record.invoice.hosted_invoice_url,
        invoice_pdf=None,
        short_url=None,
        url=record.invoice.hosted_invoice_url,
    )


def ended(failure: SagaFailure, status: SagaStatus = SagaStatus.FAILED) -> SagaRecord:
    record = finished_steps()
    if status is SagaStatus.COMPENSATION_FAILED:
        record = record.compensating(failure, T0)
    return record.ended(status, failure, failed_result(record, failure), T0)


def fields_of(record: SagaRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in SagaRecord.model_fields}


# --- forward steps -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transition", "expected"),
    [
        (lambda r: r.with_due_date(date(2030, 1, 29), LATER), {"due_date": date(2030, 1, 29)}),
        (
            lambda r: r.with_customer("acct_1", "Invoice", "cus_1", LATER),
            {"stripe_account": "acct_1", "description": "Invoice", "customer_id": "cus_1"},
        ),
        (lambda r: r.with_draft("in_1", LATER), {"invoice_id": "in_1"}),
        (lambda r: r.with_items_added(2, LATER), {"items_added": 2}),
        (lambda r: r.with_finalised(INVOICE, LATER), {"invoice": INVOICE}),
        (lambda r: r.with_short_url("https://pl.test/x", LATER), {"shortened": True, "short_url": "https://pl.test/x"}),
        (lambda r: r.with_short_url(None, LATER), {"shortened": True, "short_url": None}),
    ],
)
def test_a_step_transition_sets_its_fields_and_updated_at_and_nothing_else(transition: Any, expected: Any) -> None:
    before = fresh()
    after = transition(before)
    assert fields_of(after) == {**fields_of(before), **expected, "updated_at": LATER}
    assert before.updated_at == T0, "records are immutable: a transition returns a new one"


def test_a_wrong_type_fails_at_the_transition_not_in_the_store() -> None:
    record = fresh()
    with pytest.raises(ValidationError):
        record.with_draft(123, LATER)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        record.with_customer("acct_1", "Invoice", ["cus_1"], LATER)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        record.with_finalised({"id": "in_1"}, LATER)  # type: ignore[arg-type]


def test_items_added_only_grows_up_to_the_request_lines() -> None:
    record = fresh().with_items_added(1, LATER)
    for wrong in (0, 1, 3):
        with pytest.raises(ValueError, match="items_added"):
            record.with_items_added(wrong, LATER)
    assert record.with_items_added(2, LATER).items_added == 2


# --- endings -------------------------------------------------------------------------------------------------


def test_created_stores_its_result_from_running_only() -> None:
    record = finished_steps()
    result = created_result(record)
    done = record.created(result, LATER)
    assert (done.status, done.result, done.updated_at, done.is_terminal) == (SagaStatus.CREATED, result, LATER, True)
    with pytest.raises(ValueError, match="created, not running"):
        done.created(result, LATER)
    with pytest.raises(ValueError, match="compensating, not running"):
        record.compensating(PERMANENT, T0).created(result, LATER)


def test_compensating_records_the_owed_undo() -> None:
    record = finished_steps().compensating(PERMANENT, LATER)
    assert (record.status, record.failure, record.result, record.is_terminal) == (
        SagaStatus.COMPENSATING,
        PERMANENT,
        None,
        False,
    )
    with pytest.raises(ValueError, match="compensating, not running"):
        record.compensating(PERMANENT, LATER)


@pytest.mark.parametrize("status", [SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED])
def test_ended_stores_the_failure_and_its_result(status: SagaStatus) -> None:
    compensating = finished_steps().compensating(PERMANENT, T0)
    failure = PERMANENT.undo_failed("void failed") if status is SagaStatus.COMPENSATION_FAILED else PERMANENT
    result = failed_result(compensating, failure)
    done = compensating.ended(status, failure, result, LATER)
    assert (done.status, done.failure, done.result, done.updated_at) == (status, failure, result, LATER)


def test_ended_refuses_a_non_failure_status_and_a_terminal_record() -> None:
    record = finished_steps()
    result = failed_result(record, PERMANENT)
    for status in (SagaStatus.CREATED, SagaStatus.RUNNING, SagaStatus.COMPENSATING):
        with pytest.raises(ValueError, match="ends failed or compensation_failed"):
            record.ended(status, PERMANENT, result, LATER)
    with pytest.raises(ValueError, match="failed, not running or compensating"):
        record.ended(SagaStatus.FAILED, PERMANENT, result, LATER).ended(SagaStatus.FAILED, PERMANENT, result, LATER)


def test_the_status_and_the_failure_agree() -> None:
    document = fresh().to_document()
    failure = PERMANENT.model_dump(mode="json")
    with pytest.raises(ValidationError, match="running saga has no failure"):
        SagaRecord.model_validate({**document, "failure": failure})
    with pytest.raises(ValidationError, match="compensating saga has the failure"):
        SagaRecord.model_validate({**document, "status": "compensating"})


def test_failure_transitions() -> None:
    assert PERMANENT.undone(True) == PERMANENT.model_copy(update={"compensated": True})
    broken = PERMANENT.undo_failed("void failed: 500")
    assert (broken.compensated, broken.compensation_error) == (False, "void failed: 500")
    assert broken.undo_retried() == PERMANENT
    assert broken.undo_retried().undone(False) == PERMANENT


# --- replay -----------------------------------------------------------------------------------------------------


def test_a_retryable_failure_reopens_running_with_its_progress_and_keys() -> None:
    failed = ended(RETRYABLE)
    reopened = failed.reopened_for_replay(LATER)
    assert fields_of(reopened) == {
        **fields_of(failed),
        "status": SagaStatus.RUNNING,
        "attempt": 2,
        "failure": None,
        "result": None,
        "updated_at": LATER,
        "history": REPLAYED,
    }


def test_a_permanent_failure_starts_over_with_new_keys() -> None:
    failed = ended(PERMANENT.undone(True))
    reopened = failed.reopened_for_replay(LATER)
    assert fields_of(reopened) == {
        **fields_of(fresh()),
        "attempt": 2,
        "restarts": 1,
        "updated_at": LATER,
        "history": REPLAYED,
    }
    assert reopened.keys.draft() != failed.keys.draft()


def test_a_failed_compensation_reopens_compensating_with_the_undo_owed_again() -> None:
    broken = ended(PERMANENT.undo_failed("void failed"), SagaStatus.COMPENSATION_FAILED)
    reopened = broken.reopened_for_replay(LATER)
    assert fields_of(reopened) == {
        **fields_of(broken),
        "status": SagaStatus.COMPENSATING,
        "attempt": 2,
        "failure": PERMANENT,
        "result": None,
        "updated_at": LATER,
        "history": REPLAYED,
    }


@pytest.mark.parametrize("compensating", [False, True], ids=["running", "compensating"])
def test_an_abandoned_in_flight_saga_reopens_as_recorded(compensating: bool) -> None:
    record = finished_steps().compensating(PERMANENT, T0) if compensating else finished_steps()
    reopened = record.reopened_for_replay(LATER)
    assert fields_of(reopened) == {**fields_of(record), "attempt": 2, "updated_at": LATER, "history": REPLAYED}


def test_a_created_saga_is_not_reopened() -> None:
    record = finished_steps()
    with pytest.raises(ValueError, match="created saga is not replayed"):
        record.created(created_result(record), T0).reopened_for_replay(LATER)


def test_started_over_keeps_identity_and_history() -> None:
    record = ended(PERMANENT.undone(True)).started_over(LATER)
    assert (record.payment_link_id, record.request, record.created_at, record.attempt) == (
        REQUEST_ID,
        fresh().request,
        T0,
        1,
    )
    assert (record.status, record.restarts, record.failure, record.result) == (SagaStatus.RUNNING, 1, None, None)
