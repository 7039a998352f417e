"""A link's lifecycle rules (domain/lifecycle.py): every transition, never backwards, deterministic ids."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.lifecycle import (
    HISTORY_KEPT,
    STRIPE_EVENTS_KEPT,
    InvoiceSnapshot,
    LifecycleRecord,
    LinkStatus,
    Observation,
    decide,
)
from domain.lifecycle_events import (
    LIFECYCLE_EVENT_TYPES,
    LIFECYCLE_NAMESPACE,
    PaymentLinkOverdue,
    PaymentLinkPaid,
    PaymentLinkPaymentFailed,
    PaymentLinkUncollectible,
    PaymentLinkVoided,
    Source,
    Transition,
    lifecycle_event_id,
    lifecycle_json_schemas,
)

T0 = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
DUE = date(2030, 1, 29)
AFTER_DUE = datetime(2030, 1, 30, 0, 0, tzinfo=UTC)
LINK = "0b6c6f4e-8a8e-4a53-9a55-4a1a3b2c1d0e"
KINDS = {
    "paid": "invoice.paid",
    "void": "invoice.voided",
    "uncollectible": "invoice.marked_uncollectible",
    "open": "invoice.finalized",
}
_events = iter(range(1, 1_000_000))


def new_record(**changes: Any) -> LifecycleRecord:
    record = LifecycleRecord(
        payment_link_id=LINK,
        account_id="acc_1",
        contact_id="con_1",
        stripe_account="acct_1",
        invoice_id="in_1",
        correlation_id="corr-1",
        due_date=DUE,
        created_at=T0,
        updated_at=T0,
    )
    return record.model_copy(update=changes)


def seen(
    status: str,
    *,
    kind: str | None = "",
    event_id: str | None = "",
    source: Source = Source.WEBHOOK,
    occurred_at: datetime = T0 + timedelta(days=1),
    cancel_request_id: str | None = None,
    **snapshot: Any,
) -> Observation:
    """An observation of the link's invoice in ``status``; a webhook's by default (with a new event id)."""
    webhook = source is Source.WEBHOOK
    return Observation(
        snapshot=InvoiceSnapshot(
            invoice_id="in_1",
            status=status,
            payment_link_id=LINK,
            amount_remaining=snapshot.pop("amount_remaining", 0 if status in ("paid", "void") else 8000),
            currency="usd",
            **snapshot,
        ),
        stripe_account="acct_1",
        source=source,
        occurred_at=occurred_at,
        stripe_event_id=(event_id if event_id != "" else f"evt_{next(_events)}") if webhook else None,
        stripe_event_type=(kind if kind != "" else KINDS.get(status)) if webhook else None,
        cancel_request_id=cancel_request_id,
    )


def after(
    record: LifecycleRecord, *observations: Observation, now: datetime = T0 + timedelta(days=1)
) -> LifecycleRecord:
    for observation in observations:
        record = record.with_transitions(observation, now)
    return record


def transitions(record: LifecycleRecord) -> list[Transition]:
    return [entry.transition for entry in record.history]


def events(record: LifecycleRecord) -> list[dict[str, Any]]:
    return [entry.event for entry in record.history]


PAID_AT = datetime(2030, 1, 16, 8, 0, 1, tzinfo=UTC)


# --- each transition ------------------------------------------------------------------------------------


def test_paid_is_final_and_tells_the_payment() -> None:
    observation = seen("paid", amount_paid=8000, paid_at=PAID_AT)
    now = T0 + timedelta(days=1, seconds=5)

    record = new_record().with_transitions(observation, now)

    assert record.status is LinkStatus.PAID and record.is_final and not record.overdue
    assert transitions(record) == [Transition.PAID]
    entry = record.history[0]
    assert (entry.source, entry.at, entry.stripe_event_id, entry.appended) == (
        Source.WEBHOOK,
        now,
        observation.stripe_event_id,
        False,
    )
    assert record.unappended == [entry] and record.updated_at == now
    assert record.stripe_event_ids == [observation.stripe_event_id]
    assert PaymentLinkPaid.model_validate(entry.event) == PaymentLinkPaid(
        event_id=lifecycle_event_id(LINK, Transition.PAID),
        occurred_at=PAID_AT,
        payment_link_id=LINK,
        correlation_id="corr-1",
        account_id="acc_1",
        contact_id="con_1",
        stripe_account="acct_1",
        invoice_id="in_1",
        source=Source.WEBHOOK,
        amount_paid=8000,
        currency="usd",
        paid_at=PAID_AT,
        paid_out_of_band=False,
    )


def test_paid_out_of_band_says_so_and_without_paid_at_it_is_when_stripe_said() -> None:
    observation = seen("paid", amount_paid=8000, paid_out_of_band=True)

    event = events(after(new_record(), observation))[0]

    assert event["paid_out_of_band"] is True
    assert event["paid_at"] == event["occurred_at"] == "2030-01-16T09:30:00Z"


def test_each_failed_payment_is_told_once_and_the_link_stays_payable() -> None:
    first = seen("open", kind="invoice.payment_failed", attempt_count=1, failure_message="Your card was declined.")
    second = seen("open", kind="invoice.payment_failed", attempt_count=1, failure_message="Insufficient funds.")

    record = after(new_record(), first, second)

    assert transitions(record) == [Transition.PAYMENT_FAILED, Transition.PAYMENT_FAILED]
    assert record.status is LinkStatus.OPEN and not record.is_final and record.payment_failures == 2
    told = [PaymentLinkPaymentFailed.model_validate(event) for event in events(record)]
    assert [(e.attempt_count, e.failure_message) for e in told] == [
        (1, "Your card was declined."),
        (1, "Insufficient funds."),
    ]
    assert [e.event_id for e in told] == [
        lifecycle_event_id(LINK, Transition.PAYMENT_FAILED, first.stripe_event_id),
        lifecycle_event_id(LINK, Transition.PAYMENT_FAILED, second.stripe_event_id),
    ]
    assert told[0].occurred_at == first.occurred_at


def test_a_failed_payment_reported_with_no_attempt_count_is_the_first_attempt() -> None:
    record = after(new_record(), seen("open", kind="invoice.payment_failed"))

    assert events(record)[0]["attempt_count"] == 1 and events(record)[0]["failure_message"] is None


@pytest.mark.parametrize(
    "observation",
    [
        pytest.param(seen("open", kind="invoice.payment_failed", source=Source.RECONCILE), id="a-read-is-no-event"),
        pytest.param(seen("open", kind="invoice.payment_failed", event_id=None), id="no-stripe-event-id"),
        pytest.param(seen("open", kind="invoice.updated", attempt_count=3), id="other-event-type"),
        pytest.param(seen("draft", kind="invoice.payment_failed"), id="not-payable"),
    ],
)
def test_only_an_invoice_payment_failed_event_on_a_payable_invoice_is_a_failed_payment(
    observation: Observation,
) -> None:
    assert decide(new_record(), observation, T0) == []


def test_uncollectible_then_paid() -> None:
    marked = datetime(2030, 1, 20, tzinfo=UTC)

    uncollectible = after(new_record(), seen("uncollectible", marked_uncollectible_at=marked, amount_remaining=7000))

    assert uncollectible.status is LinkStatus.UNCOLLECTIBLE and not uncollectible.is_final
    assert PaymentLinkUncollectible.model_validate(events(uncollectible)[0]).model_dump() == {
        **PaymentLinkUncollectible.model_validate(events(uncollectible)[0]).model_dump(),
        "event_id": lifecycle_event_id(LINK, Transition.UNCOLLECTIBLE),
        "occurred_at": marked,
        "amount_remaining": 7000,
    }
    paid = after(uncollectible, seen("paid", amount_paid=8000, paid_at=PAID_AT))
    assert paid.status is LinkStatus.PAID and transitions(paid) == [Transition.UNCOLLECTIBLE, Transition.PAID]


def test_uncollectible_without_its_moment_is_when_stripe_said() -> None:
    observation = seen("uncollectible")

    assert events(after(new_record(), observation))[0]["occurred_at"] == "2030-01-16T09:30:00Z"


def test_uncollectible_then_void() -> None:
    record = after(new_record(), seen("uncollectible"), seen("void"))

    assert record.status is LinkStatus.VOID and record.is_final
    assert transitions(record) == [Transition.UNCOLLECTIBLE, Transition.VOIDED]


def test_open_then_void_in_the_dashboard_and_by_a_cancel_request() -> None:
    voided_at = datetime(2030, 1, 17, 12, tzinfo=UTC)

    dashboard = events(after(new_record(), seen("void", voided_at=voided_at)))[0]
    cancel = events(
        after(new_record(), seen("void", source=Source.CANCEL, cancel_request_id="cancel-1", occurred_at=voided_at))
    )[0]

    assert PaymentLinkVoided.model_validate(dashboard).cancel_request_id is None
    assert dashboard["voided_at"] == dashboard["occurred_at"] == "2030-01-17T12:00:00Z"
    assert (cancel["source"], cancel["cancel_request_id"], cancel["voided_at"]) == (
        "cancel",
        "cancel-1",
        "2030-01-17T12:00:00Z",
    )
    assert dashboard["event_id"] == cancel["event_id"] == lifecycle_event_id(LINK, Transition.VOIDED)


def test_overdue_once_the_due_date_has_passed() -> None:
    scan = seen("open", source=Source.SCAN)

    record = after(new_record(), scan, now=AFTER_DUE)

    assert record.overdue and record.status is LinkStatus.OPEN and transitions(record) == [Transition.OVERDUE]
    assert PaymentLinkOverdue.model_validate(events(record)[0]).model_dump() == {
        **PaymentLinkOverdue.model_validate(events(record)[0]).model_dump(),
        "event_id": lifecycle_event_id(LINK, Transition.OVERDUE),
        "occurred_at": AFTER_DUE,
        "due_date": DUE,
        "amount_remaining": 8000,
        "source": Source.SCAN,
    }
    again = after(record, seen("open", source=Source.SCAN), seen("open", source=Source.RECONCILE), now=AFTER_DUE)
    assert again.history == record.history


@pytest.mark.parametrize(
    ("now", "overdue"),
    [
        pytest.param(datetime(2030, 1, 29, 23, 59, 59, tzinfo=UTC), False, id="on-the-due-date"),
        pytest.param(datetime(2030, 1, 30, 1, 0, tzinfo=timezone(timedelta(hours=2))), False, id="utc-decides"),
        pytest.param(datetime(2030, 1, 29, 23, 0, tzinfo=timezone(timedelta(hours=-2))), True, id="utc-next-day"),
        pytest.param(AFTER_DUE, True, id="the-day-after"),
    ],
)
def test_overdue_counts_days_in_utc(now: datetime, overdue: bool) -> None:
    assert decide(new_record(), seen("open", source=Source.SCAN), now) == ([Transition.OVERDUE] if overdue else [])


def test_the_invoice_due_date_wins_and_without_any_there_is_no_overdue() -> None:
    shown = seen("open", source=Source.SCAN, due_date=date(2030, 1, 20))

    record = after(new_record(), shown, now=datetime(2030, 1, 25, tzinfo=UTC))

    assert events(record)[0]["due_date"] == "2030-01-20"
    assert decide(new_record(due_date=None), seen("open", source=Source.SCAN), AFTER_DUE) == []
    late = after(new_record(due_date=None), seen("open", source=Source.SCAN, due_date=DUE), now=AFTER_DUE)
    assert events(late)[0]["due_date"] == "2030-01-29"


def test_overdue_and_uncollectible_together_in_the_order_they_happen() -> None:
    record = after(new_record(), seen("uncollectible", source=Source.RECONCILE), now=AFTER_DUE)

    assert transitions(record) == [Transition.UNCOLLECTIBLE, Transition.OVERDUE]
    assert record.status is LinkStatus.UNCOLLECTIBLE and record.overdue
    assert after(record, seen("uncollectible", source=Source.SCAN), now=AFTER_DUE).history == record.history


def test_an_uncollectible_link_can_still_become_overdue() -> None:
    record = after(new_record(), seen("uncollectible"))

    assert decide(record, seen("uncollectible", source=Source.SCAN), AFTER_DUE) == [Transition.OVERDUE]


@pytest.mark.parametrize("status", ["paid", "void"])
def test_a_paid_or_void_invoice_is_never_overdue(status: str) -> None:
    assert decide(new_record(), seen(status, source=Source.RECONCILE), AFTER_DUE) == [
        Transition.PAID if status == "paid" else Transition.VOIDED
    ]


# --- never backwards -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "late"),
    [
        pytest.param("paid", seen("uncollectible"), id="uncollectible-after-paid"),
        pytest.param("paid", seen("open", kind="invoice.payment_failed", attempt_count=1), id="failed-after-paid"),
        pytest.param("paid", seen("void"), id="void-after-paid"),
        pytest.param("void", seen("paid", amount_paid=8000), id="paid-after-void"),
        pytest.param("void", seen("open", source=Source.SCAN), id="overdue-after-void"),
        pytest.param("paid", seen("open", source=Source.SCAN), id="overdue-after-paid"),
    ],
)
def test_a_final_link_never_moves(first: str, late: Observation) -> None:
    record = after(new_record(), seen(first))

    moved = after(record, late, now=AFTER_DUE)

    assert moved.status is record.status and moved.history == record.history
    assert decide(record, late, AFTER_DUE) == []


def test_a_stale_open_invoice_does_not_reopen_an_uncollectible_link() -> None:
    record = after(new_record(), seen("uncollectible"))

    stale = after(record, seen("open", kind="invoice.finalized"), seen("uncollectible"))

    assert stale.status is LinkStatus.UNCOLLECTIBLE and transitions(stale) == [Transition.UNCOLLECTIBLE]


def test_a_draft_invoice_moves_nothing() -> None:
    assert decide(new_record(), seen("draft", source=Source.RECONCILE), AFTER_DUE) == []


# --- ids and the record's bookkeeping --------------------------------------------------------------------


def test_event_ids_are_the_same_whoever_notices_the_transition() -> None:
    by_source = {
        source: events(after(new_record(), seen("paid", source=source)))[0]["event_id"]
        for source in (Source.WEBHOOK, Source.RECONCILE, Source.SCAN)
    }
    overdue = {
        source: events(after(new_record(), seen("open", source=source), now=AFTER_DUE))[0]["event_id"]
        for source in (Source.WEBHOOK, Source.RECONCILE, Source.SCAN)
    }

    assert set(by_source.values()) == {lifecycle_event_id(LINK, Transition.PAID)}
    assert set(overdue.values()) == {lifecycle_event_id(LINK, Transition.OVERDUE)}


def test_event_ids_are_uuid5_of_link_and_transition() -> None:
    assert lifecycle_event_id(LINK, Transition.PAID) == str(uuid.uuid5(LIFECYCLE_NAMESPACE, f"{LINK}/paid"))
    assert lifecycle_event_id(LINK, Transition.PAID, "evt_1") == lifecycle_event_id(LINK, Transition.PAID)
    assert lifecycle_event_id(LINK, Transition.PAYMENT_FAILED, "evt_1") == str(
        uuid.uuid5(LIFECYCLE_NAMESPACE, f"{LINK}/payment_failed:evt_1")
    )
    ids = {lifecycle_event_id(link, t) for link in (LINK, "other") for t in Transition} | {
        lifecycle_event_id(LINK, Transition.PAYMENT_FAILED, "evt_2")
    }
    assert len(ids) == 2 * len(Transition) + 1


def test_history_and_stripe_event_ids_are_bounded_keeping_the_newest() -> None:
    failures = [seen("open", kind="invoice.payment_failed") for _ in range(HISTORY_KEPT + 5)]
    record = after(new_record(), seen("uncollectible"), *failures)

    assert len(record.history) == HISTORY_KEPT and record.payment_failures == HISTORY_KEPT + 5
    assert [entry.stripe_event_id for entry in record.history] == [f.stripe_event_id for f in failures[-HISTORY_KEPT:]]
    others = [seen("open", kind="invoice.updated") for _ in range(STRIPE_EVENTS_KEPT - HISTORY_KEPT)]
    record = after(record, *others)
    assert len(record.stripe_event_ids) == STRIPE_EVENTS_KEPT
    assert record.stripe_event_ids[-1] == others[-1].stripe_event_id
    assert not record.has_seen(failures[0].stripe_event_id) and record.has_seen(failures[-1].stripe_event_id)


def test_an_observation_without_a_stripe_event_is_not_remembered() -> None:
    record = after(new_record(), seen("open", source=Source.RECONCILE))

    assert record.stripe_event_ids == [] and not record.has_seen(None)


def test_with_appended_marks_only_the_given_events() -> None:
    record = after(new_record(), seen("uncollectible"), seen("paid"))
    paid_id = lifecycle_event_id(LINK, Transition.PAID)
    later = T0 + timedelta(days=3)

    marked = record.with_appended({paid_id}, later)

    assert [entry.appended for entry in marked.history] == [False, True]
    assert marked.unappended == [record.history[0]] and marked.updated_at == later
    assert marked.with_appended({e["event_id"] for e in events(record)}, later).unappended == []


def test_a_record_round_trips_through_its_document_with_fixed_width_times() -> None:
    record = after(new_record(), seen("uncollectible"), now=datetime(2030, 1, 16, tzinfo=timezone(timedelta(hours=3))))

    document = record.to_document()

    assert document["updated_at"] == "2030-01-15T21:00:00.000000Z"
    assert document["created_at"] == "2030-01-15T09:30:00.000000Z"
    assert LifecycleRecord.from_document({**document, "_id": LINK}) == record
    assert record.model_dump()["updated_at"] == record.updated_at  # python form keeps the datetime


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        seen("paid", occurred_at=datetime(2030, 1, 16))


def test_every_lifecycle_event_has_a_json_schema_with_the_common_fields() -> None:
    schemas = lifecycle_json_schemas()

    assert sorted(schemas) == sorted(kind.__name__ for kind in LIFECYCLE_EVENT_TYPES)
    common = {"event_id", "event_type", "occurred_at", "payment_link_id", "account_id", "contact_id", "source"}
    assert all(common <= set(schema["properties"]) for schema in schemas.values())
    assert "cancel_request_id" in schemas["PaymentLinkVoided"]["properties"]


def test_overdue_counts_days_in_utc_whatever_the_hosts_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Etc/GMT-14")  # UTC+14: already the 30th at 10:00 UTC on the 29th
    time.tzset()
    try:
        assert decide(new_record(), seen("open", source=Source.SCAN), datetime(2030, 1, 29, 10, tzinfo=UTC)) == []
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_observation_made_after_the_due_date_counts_even_if_the_store_clock_is_earlier() -> None:
    """The overdue scan passes its own clock as the observation's time; the later clock decides."""
    late = seen("open", source=Source.SCAN, occurred_at=AFTER_DUE)
    record = after(new_record(), late, now=T0)
    assert transitions(record) == [Transition.OVERDUE]
    assert PaymentLinkOverdue.model_validate(events(record)[0]).occurred_at == AFTER_DUE
    early = seen("open", source=Source.SCAN, occurred_at=T0)
    assert decide(new_record(), early, AFTER_DUE) == [Transition.OVERDUE], "the store's later clock counts too"
    assert decide(new_record(), early, T0) == []
