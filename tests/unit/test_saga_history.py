"""The saga's bounded step history: what each pass did, kept across attempts, at no extra store operation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import PermanentError, Reason, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.saga_history import (
    CARRIED_SAGAS_LIMIT,
    HISTORY_LIMIT,
    CarriedHistory,
    EntryKind,
    HistoryEntry,
    Journal,
    SagaHistory,
)
from domain.saga_record import SagaRecord
from tests.fakes.basics import FakeClock
from tests.fakes.world import REQUEST_ID, World, make_request, run_like_worker

T0 = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
# draft (with the customer), created (with the items, finalise and shorten): validate goes in with the
# insert (ADRs 0016, 0018)
CLEAN_SAVES = 2


class TickingClock(FakeClock):
    """Each reading is one second after the previous one: every start and end is distinct."""

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


def entry(kind: EntryKind = EntryKind.DONE, number: int = 0, attempt: int = 1) -> HistoryEntry:
    moment = T0 + timedelta(seconds=number)
    return HistoryEntry(kind=kind, step=f"s{number}", attempt=attempt, started_at=moment, ended_at=moment)


def summary(record: SagaRecord) -> list[tuple[str, str, int]]:
    return [(e.kind.value, e.step, e.attempt) for e in record.history.entries]


async def test_a_created_saga_records_each_step_with_its_times_ids_and_result() -> None:
    world = World(clock=TickingClock())
    result = await world.saga().run(make_request())
    assert isinstance(result, PaymentLinkCreated)
    record = world.store.record(REQUEST_ID)
    assert summary(record) == [
        ("done", "validate", 1),
        ("done", "customer", 1),
        ("done", "draft", 1),
        ("done", "items", 1),
        ("done", "items", 1),
        ("done", "finalise", 1),
        ("done", "shorten", 1),
        ("result", "result", 1),
    ]
    entries = record.history.entries
    assert [e.ids for e in entries] == [
        {"due_date": "2030-01-29"},
        {"stripe_account": "acct_1", "customer_id": result.customer_id},
        {"invoice_id": result.invoice_id},
        {"items": "0..0"},
        {"items": "1..1"},
        {"invoice_number": result.invoice_number},
        {"short_url": result.short_url},
        {"event_id": result.event_id},
    ]
    for earlier, later in itertools.pairwise(entries):
        assert earlier.started_at <= earlier.ended_at <= later.started_at
    assert all(e.started_at < e.ended_at for e in entries[1:])  # validate's went in with the insert (ADR 0016)
    assert entries[-1].started_at < entries[-1].ended_at, "the result entry is timed too"
    assert all(e.reason is None and e.retryable is None and e.message is None for e in entries)
    assert record.history.dropped == 0
    assert record.version == CLEAN_SAVES, "the history rides along: no save of its own"


async def test_a_transient_failure_is_kept_until_the_next_save_and_costs_no_save() -> None:
    world = World()
    world.billing.faults.add("create_draft_invoice", RetryableError(Reason.STRIPE_UNAVAILABLE, "draft: 503"))
    result = await run_like_worker(world.saga(), make_request())
    assert isinstance(result, PaymentLinkCreated)
    record = world.store.record(REQUEST_ID)
    retry = [e for e in record.history.entries if e.kind is EntryKind.RETRY]
    assert [(e.step, e.reason, e.retryable, e.message) for e in retry] == [
        ("draft", Reason.STRIPE_UNAVAILABLE, True, "draft: 503")
    ]
    # The customer step rides with the draft's save: the retried pass did it again (ADR 0018).
    assert summary(record)[1:5] == [
        ("done", "customer", 1),
        ("retry", "draft", 1),
        ("done", "customer", 1),
        ("done", "draft", 1),
    ]
    assert record.version == CLEAN_SAVES


async def test_a_permanent_failure_records_the_failure_the_compensation_and_the_result() -> None:
    world = World(clock=TickingClock())
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    result = await world.saga().run(make_request())
    assert isinstance(result, PaymentLinkFailed)
    record = world.store.record(REQUEST_ID)
    assert summary(record)[3:] == [("failed", "items", 1), ("undone", "compensation", 1), ("result", "result", 1)]
    failed, undone, reported = record.history.entries[3:]
    assert (failed.reason, failed.retryable, failed.message) == (Reason.PRICE_NOT_FOUND, False, "No such price")
    assert undone.ids == {"invoice_id": record.invoice_id} and undone.reason is None
    assert undone.started_at < undone.ended_at and reported.started_at < reported.ended_at
    assert reported.ids == {"event_id": result.event_id}


async def test_a_failed_undo_is_recorded_with_its_error() -> None:
    world = World()
    world.billing.faults.add("add_invoice_item", PermanentError(Reason.PRICE_NOT_FOUND, "No such price"))
    world.billing.faults.add("delete_draft", PermanentError(Reason.STRIPE_PERMISSION_DENIED, "no access"))
    await world.saga().run(make_request())
    record = world.store.record(REQUEST_ID)
    undo = [e for e in record.history.entries if e.step == "compensation"]
    assert [(e.kind, e.reason, e.message, e.ids) for e in undo] == [
        (EntryKind.UNDO_FAILED, Reason.STRIPE_PERMISSION_DENIED, "no access", {"invoice_id": record.invoice_id})
    ]


async def test_giving_up_then_replaying_keeps_the_earlier_attempt() -> None:
    world = World()
    world.billing.faults.add("finalize_invoice", RetryableError(Reason.STRIPE_UNAVAILABLE, "503"), times=2)
    gave_up = await run_like_worker(world.saga(), make_request(), attempts=2)
    assert isinstance(gave_up, PaymentLinkFailed)
    replayed = await world.saga().replay(REQUEST_ID)
    assert isinstance(replayed, PaymentLinkCreated)
    record = world.store.record(REQUEST_ID)
    # Items ride with the result: each later pass found the lines on the draft before finalising (ADR 0018).
    assert summary(record)[5:] == [
        ("retry", "finalise", 1),
        ("done", "items", 1),
        ("retry", "finalise", 1),
        ("gave_up", "finalise", 1),
        ("result", "result", 1),
        ("replayed", "saga", 2),
        ("done", "items", 2),
        ("done", "finalise", 2),
        ("done", "shorten", 2),
        ("result", "result", 2),
    ]
    assert record.history.entries[6].ids == record.history.entries[11].ids == {"items": "0..1 found"}
    gave = record.history.entries[8]
    assert (gave.reason, gave.retryable, gave.message) == (Reason.STRIPE_UNAVAILABLE, True, "after 2 attempt(s): 503")
    results = [e.ids["event_id"] for e in record.history.entries if e.kind is EntryKind.RESULT]
    assert results == [gave_up.event_id, replayed.event_id]


async def test_giving_up_on_an_unexpected_error_names_it() -> None:
    world = World()
    await world.saga().give_up(make_request(), KeyError("bug"), attempts=1)
    gave = world.store.record(REQUEST_ID).history.entries[0]
    assert (gave.kind, gave.reason, gave.retryable) == (EntryKind.GAVE_UP, Reason.INTERNAL_ERROR, True)
    assert gave.message is not None and gave.message.startswith("after 1 attempt(s): KeyError")


async def test_a_failed_save_keeps_the_pending_entries_for_the_next_save() -> None:
    world = World()
    world.store.faults.add("save", RetryableError(Reason.INTERNAL_ERROR, "not primary"), times=1)
    result = await run_like_worker(world.saga(), make_request())
    assert isinstance(result, PaymentLinkCreated)
    record = world.store.record(REQUEST_ID)
    # validate's entry went in with the insert (ADR 0016): the first save is the draft step's (ADR 0018)
    assert summary(record)[:6] == [
        ("done", "validate", 1),
        ("done", "customer", 1),
        ("done", "draft", 1),  # done, but its save failed: kept, with the retry, for the next save
        ("retry", "draft", 1),
        ("done", "customer", 1),
        ("done", "draft", 1),  # the draft of the first pass, adopted
    ]
    assert record.history.entries[3].message == "not primary"
    assert record.history.entries[5].ids == {"invoice_id": record.invoice_id, "adopted": "true"}


async def test_the_history_survives_the_document_round_trip() -> None:
    world = World()
    await world.saga().run(make_request())
    document = world.store.documents[REQUEST_ID]
    assert document["history"]["entries"][0]["started_at"] == "2030-01-15T09:30:00.000000Z"
    assert SagaRecord.from_document(document).history == world.store.record(REQUEST_ID).history


# --- the bound ---------------------------------------------------------------------------------------------


def test_the_history_keeps_the_newest_entries_and_counts_the_dropped() -> None:
    full = SagaHistory().plus([entry(number=n) for n in range(HISTORY_LIMIT)])
    assert (len(full.entries), full.dropped) == (HISTORY_LIMIT, 0)
    over = full.plus([entry(number=HISTORY_LIMIT), entry(number=HISTORY_LIMIT + 1)])
    assert len(over.entries) == HISTORY_LIMIT and over.dropped == 2
    assert over.entries[0] == entry(number=2) and over.entries[-1] == entry(number=HISTORY_LIMIT + 1)
    assert over.plus([entry(number=99)]).dropped == 3, "the counter accumulates"
    assert over.plus([]) == over


async def test_a_long_saga_stays_within_the_bound() -> None:
    world = World()
    lines = [{"description": f"line {n}", "amount": 100} for n in range(HISTORY_LIMIT + 10)]
    await world.saga().run(make_request(line_items=lines))
    history = world.store.record(REQUEST_ID).history
    assert len(history.entries) == HISTORY_LIMIT
    assert history.dropped == 3 + len(lines) + 3 - HISTORY_LIMIT  # validate, customer, draft, items, 3 more
    assert history.entries[-1].kind is EntryKind.RESULT


def test_with_history_appends_without_touching_updated_at() -> None:
    record = SagaRecord.start(make_request(), T0)
    assert record.with_history([]) is record
    added = record.with_history([entry(number=5)])
    assert added.history.entries == (entry(number=5),) and added.updated_at == T0
    assert record.history.entries == (), "records are immutable"


def test_the_journal_dates_entries_from_the_step_start() -> None:
    journal = Journal([entry(number=1)])
    journal.note(EntryKind.RESULT, 3, T0)
    assert (journal.pending[-1].step, journal.pending[-1].started_at) == ("saga", T0), "no step begun yet"
    journal.begin("draft", T0 + timedelta(seconds=10))
    error = RetryableError(Reason.STRIPE_UNAVAILABLE, "503")
    journal.note(EntryKind.RETRY, 2, T0 + timedelta(seconds=12), ids={"a": "b"}, error=error)
    last = journal.pending[-1]
    assert (last.step, last.attempt, last.started_at, last.ended_at) == (
        "draft",
        2,
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=12),
    )
    assert (last.ids, last.reason, last.retryable, last.message) == ({"a": "b"}, Reason.STRIPE_UNAVAILABLE, True, "503")
    assert len(journal.take()) == 3 and journal.pending == () and journal.take() == ()


def test_carried_history_re_keeping_a_saga_makes_it_the_newest() -> None:
    carried = CarriedHistory(limit=3)
    for name, number in (("a", 1), ("b", 2), ("a", 3), ("c", 4), ("d", 5)):
        carried.keep(name, [entry(number=number)])
    assert carried.take("b") == (), "b, carried longest ago, is forgotten first"
    assert [carried.take(name) for name in "acd"] == [(entry(number=3),), (entry(number=4),), (entry(number=5),)]


def test_carried_history_holds_up_to_its_default_limit() -> None:
    carried = CarriedHistory()
    for number in range(CARRIED_SAGAS_LIMIT + 1):
        carried.keep(str(number), [entry()])
    assert len(carried) == CARRIED_SAGAS_LIMIT == 10_000
    assert (carried.take("0"), carried.take("1")) == ((), (entry(),)), "only the first one was forgotten"


def test_carried_history_is_bounded_per_saga_and_in_sagas() -> None:
    carried = CarriedHistory(limit=2)
    carried.keep("a", [entry(number=n) for n in range(HISTORY_LIMIT + 3)])
    assert len(carried.take("a")) == HISTORY_LIMIT and carried.take("a") == ()
    carried.keep("a", [entry(number=1)])
    carried.keep("b", [entry(number=2)])
    carried.keep("a", [entry(number=3)])  # replaces a's, which becomes the newest
    carried.keep("c", [entry(number=4)])  # over the limit: b, carried longest ago, is forgotten
    assert len(carried) == 2
    assert carried.take("b") == () and carried.take("a") == (entry(number=3),)
    assert carried.take("c") == (entry(number=4),)


@pytest.mark.parametrize("kind", list(EntryKind))
def test_every_entry_kind_round_trips(kind: EntryKind) -> None:
    original = entry(kind, 3)
    assert HistoryEntry.model_validate(original.model_dump(mode="json")) == original
