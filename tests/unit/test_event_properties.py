"""Properties over arbitrary requests.

- Any bytes either parse into a request or fail with invalid_event / invalid_line_items / invalid_due_date.
- A parsed request becomes Stripe parameters that respect every bound the fake Stripe enforces: the saga
  ends ``PaymentLinkCreated`` (or ``invalid_due_date`` when the date is not ahead of the clock), never with
  a Stripe rejection.
- Idempotency keys are the same on every run of a request and distinct across steps and items.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from domain.errors import PermanentError, Reason
from domain.events import AmountLineItem, PaymentLinkCreated, PaymentLinkFailed, PaymentLinkRequested
from domain.intake import parse_request
from tests.fakes.world import World, request_document

VALIDATION_REASONS = {Reason.INVALID_EVENT, Reason.INVALID_LINE_ITEMS, Reason.INVALID_DUE_DATE}
TODAY = date(2030, 1, 15)
PRICE_UNIT = 100
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

quantities = st.one_of(st.integers(-1, 4), st.integers(9_998, 10_002), st.just("2"), st.just(1.5))
amounts = st.one_of(st.integers(-1, 3), st.integers(1, 10**6), st.integers(99_999_990, 100_000_010))
descriptions = st.one_of(st.text(max_size=6), st.integers(498, 502).map(lambda n: "d" * n))
price_ids = st.one_of(st.sampled_from(["price_a", "price_b"]), st.text(max_size=4))


def _with_quantity(item: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(item, st.one_of(st.none(), quantities)).map(
        lambda pair: pair[0] if pair[1] is None else {**pair[0], "quantity": pair[1]}
    )


line_item = st.one_of(
    _with_quantity(st.fixed_dictionaries({"price_id": price_ids})),
    _with_quantity(st.fixed_dictionaries({"description": descriptions, "amount": amounts})),
    st.fixed_dictionaries({"price_id": price_ids, "amount": amounts}),
    st.dictionaries(st.sampled_from(["quantity", "amount", "extra"]), st.integers(0, 3), max_size=2),
    st.integers(),
)
line_items = st.one_of(
    st.lists(line_item, max_size=5),
    st.integers(249, 251).map(lambda n: [{"price_id": "price_a"}] * n),
    st.just("nope"),
)
metadata_keys = st.one_of(st.text(max_size=6), st.sampled_from(["account_id", "note_id", "a[b]", "k" * 40, "k" * 41]))
metadata_values = st.one_of(st.text(max_size=6), st.integers(499, 501).map(lambda n: "v" * n), st.integers())
metadata = st.dictionaries(metadata_keys, metadata_values, max_size=21)
due_dates = st.integers(-3, 5 * 365 + 3).map(lambda days: (TODAY + timedelta(days=days)).isoformat())
due_rules: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"days_until_due": st.one_of(st.integers(-1, 367), st.just("3"))}),
    st.fixed_dictionaries({"due_date": st.one_of(due_dates, st.just("2030-02-30"), st.just("soon"))}),
    st.fixed_dictionaries({"due_date": due_dates, "days_until_due": st.integers(1, 3)}),
    st.just({}),
)
envelope = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.uuids().map(str), st.text(max_size=5)),
        "currency": st.one_of(st.sampled_from(["usd", "eur", "USD", "us", "usdd"]), st.text(max_size=3)),
        "description": descriptions,
        "account_id": st.one_of(st.text(max_size=4), st.integers(201, 202).map(lambda n: "a" * n)),
        "correlation_id": st.one_of(st.none(), st.text(max_size=4)),
        "schema_version": st.sampled_from([1, 2, "1"]),
    },
)
dropped = st.sets(st.sampled_from(["event_id", "event_type", "occurred_at", "account_id", "contact_id"]), max_size=1)


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    document = request_document(days_until_due=None)
    document.update(draw(envelope))
    document.update(draw(due_rules))
    document["line_items"] = draw(line_items)
    document["metadata"] = draw(metadata)
    for field in draw(dropped):
        document.pop(field, None)
    return json.dumps(document).encode()


valid_quantities = st.one_of(st.integers(1, 3), st.integers(9_990, 10_000))
plausible_line = st.one_of(
    st.fixed_dictionaries(
        {"price_id": st.sampled_from(["price_a", "price_b"])}, optional={"quantity": valid_quantities}
    ),
    st.builds(
        lambda description, quantity, share: {
            "description": description,
            "quantity": quantity,
            "amount": max(1, 99_999_999 // quantity - share),  # at, or just under, the line-total limit
        },
        st.one_of(st.text(min_size=1, max_size=6), st.just("d" * 500)),
        valid_quantities,
        st.integers(-1, 50),
    ),
)
plausible_metadata = st.dictionaries(
    st.one_of(st.text(min_size=1, max_size=6), st.just("k" * 40)).filter(lambda key: "[" not in key and "]" not in key),
    st.one_of(st.text(max_size=6), st.just("v" * 500)),
    max_size=20,
)


@st.composite
def plausible_request_bytes(draw: st.DrawFn) -> bytes:
    """Requests close to (mostly inside) every bound, so the Stripe side is exercised too."""
    document = request_document(days_until_due=None)
    document["event_id"] = str(draw(st.uuids()))
    document["currency"] = draw(st.sampled_from(["usd", "eur", "jpy"]))
    description = draw(st.one_of(st.none(), st.just(""), st.just("m" * 500), st.text(max_size=8)))
    if description is not None:
        document["description"] = description
    document.update(
        draw(
            st.one_of(
                st.fixed_dictionaries({"days_until_due": st.integers(1, 365)}),
                st.fixed_dictionaries({"due_date": due_dates}),
            )
        )
    )
    document["line_items"] = draw(
        st.one_of(st.lists(plausible_line, min_size=1, max_size=6), st.just([{"price_id": "price_a"}] * 250))
    )
    document["metadata"] = draw(plausible_metadata)
    return json.dumps(document).encode()


def run_saga(request: PaymentLinkRequested) -> tuple[PaymentLinkCreated | PaymentLinkFailed, World]:
    world = World()
    world.crm.add_account(request.account_id, "acct_1")
    world.crm.add_contact(request.account_id, request.contact_id, name="Prop Erty", email='q"\\@x.y')
    for line in request.line_items:
        if not isinstance(line, AmountLineItem):
            world.billing.add_price("acct_1", line.price_id, PRICE_UNIT, request.currency)
    return asyncio.run(world.saga().run(request)), world


def expected_total(request: PaymentLinkRequested) -> int:
    return sum(
        (line.amount if isinstance(line, AmountLineItem) else PRICE_UNIT) * line.quantity for line in request.line_items
    )


@PROPERTY_SETTINGS
@given(st.one_of(plausible_request_bytes(), request_bytes(), st.binary(max_size=64)))
def test_requests_validate_into_parameters_stripe_accepts_or_fail_with_a_validation_reason(raw: bytes) -> None:
    try:
        request = parse_request(raw)
    except PermanentError as error:
        assert error.reason in VALIDATION_REASONS
        assert 0 < len(error.message) <= 1000
        event(f"rejected: {error.reason}")
        return
    result, world = run_saga(request)
    if isinstance(result, PaymentLinkFailed):
        assert (result.reason, result.failed_step) == ("invalid_due_date", "validate"), result.message
        assert world.billing.calls == []
        event("failed: due date not ahead")
        return
    event("created")
    assert result.amount_due == expected_total(request)
    invoice = world.billing.invoices[result.invoice_id]
    assert len(invoice.items) == len(request.line_items)
    assert len(invoice.params["metadata"]) <= 50


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"price_id": st.just("price_a")}),
            st.fixed_dictionaries({"description": st.just("x"), "amount": st.integers(1, 100)}),
        ),
        min_size=1,
        max_size=8,
    ),
    st.uuids(),
)
def test_idempotency_keys_are_stable_across_runs_and_distinct_across_steps_and_items(
    lines: list[dict[str, Any]], request_id: Any
) -> None:
    raw = json.dumps(request_document(event_id=str(request_id), line_items=lines)).encode()
    request = parse_request(raw)
    _, first = run_saga(request)
    _, second = run_saga(request)
    assert first.billing.keys_used == second.billing.keys_used
    keys = [key for _, key in first.billing.keys_used]
    assert len(keys) == len(set(keys)) == len(lines) + 3  # customer, draft, items, finalise
    assert all(len(key) < 255 for key in keys)
