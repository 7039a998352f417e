"""Exact values users and in-flight sagas rely on: idempotency keys, error texts, bounds and boundaries.

Idempotency keys must not change across a deploy (a saga in flight would create a second invoice), and
messages are what producers and operators read in ``PaymentLinkFailed.message``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from domain.billing import NewCustomer
from domain.crm import Contact, ContactAddress
from domain.errors import (
    ConcurrentUpdateError,
    PaylinkError,
    PermanentError,
    Reason,
    RetryableError,
    excerpt,
    safe_message,
)
from domain.events import AmountLineItem, PaymentLinkRequested, PriceLineItem
from domain.intake import MAX_DUE_DATE_DAYS_AHEAD, parse_request, resolve_due_date
from domain.keys import InvoiceKeys, customer_key
from tests.fakes.world import make_request, request_document

LINK = "0b6c6f4e-8a8e-4a53-9a55-4a1a3b2c1d0e"


# --- idempotency keys ----------------------------------------------------------------------------


def test_invoice_keys_have_a_fixed_text() -> None:
    keys = InvoiceKeys(LINK, restarts=2)
    assert keys.draft() == f"paylink-{LINK}-r2-draft"
    assert keys.item(7) == f"paylink-{LINK}-r2-item-7"
    assert keys.items(3, 5) == f"paylink-{LINK}-r2-items-3-5"
    assert keys.finalise() == f"paylink-{LINK}-r2-finalise"
    assert keys.void() == f"paylink-{LINK}-r2-void"
    assert InvoiceKeys(LINK).draft() == f"paylink-{LINK}-r0-draft"


def test_the_customer_key_has_a_fixed_text() -> None:
    # Unsorted keys and a non-ASCII name: the scope is canonical JSON (sorted keys, ASCII escapes).
    params = {"name": "Zoë", "metadata": {"b": "1", "a": "2"}, "email": "z@x"}
    key = customer_key("acct_1", "acc_1", "c1", params)
    assert key == "paylink-customer-aacba56e7eed25fc67a15ceb043a33380262a48175636e7f"
    assert customer_key("acct_1", "acc_1", "c1", dict(reversed(params.items()))) == key


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", [excerpt, safe_message])
def test_text_at_the_limit_is_kept_and_longer_text_is_cut_to_the_limit(bound: object) -> None:
    assert callable(bound)
    assert bound("x" * 10, 10) == "x" * 10
    assert bound("x" * 11, 10) == "x" * 9 + "…"


def test_excerpt_renders_other_values_like_repr() -> None:
    assert excerpt("plain") == "plain"
    assert excerpt(None) == "None"
    assert excerpt(["a"]) == "['a']"
    assert excerpt("y" * 100) == "y" * 59 + "…"


def test_a_huge_message_is_bounded_in_the_error() -> None:
    error = PermanentError(Reason.INVALID_EVENT, "z" * 5000)
    assert error.message == "z" * 999 + "…"
    assert str(error) == f"invalid_event: {error.message}"


def test_errors_carry_reason_message_and_text() -> None:
    error = PaylinkError("price_not_found", "No such price: p")
    assert (error.reason, error.message, str(error)) == (Reason.PRICE_NOT_FOUND, "No such price: p", error.args[0])
    assert str(error) == "price_not_found: No such price: p"
    default = RetryableError()
    assert (default.reason, default.message, default.retry_after_s) == (
        Reason.STRIPE_UNAVAILABLE,
        "a dependency is temporarily unavailable",
        None,
    )
    given = RetryableError(Reason.INTERNAL_ERROR, "mongo down", retry_after_s=2.5)
    assert (given.message, given.retry_after_s, given.retryable) == ("mongo down", 2.5, True)


def test_a_concurrent_update_names_the_saga_and_the_version() -> None:
    error = ConcurrentUpdateError(LINK, 4)
    assert (error.payment_link_id, error.expected_version) == (LINK, 4)
    assert error.reason is Reason.INTERNAL_ERROR and error.retryable
    assert error.message == f"saga {LINK} changed concurrently (expected version 4)"


# --- intake ----------------------------------------------------------------------------------------


def _rejected(document: dict[str, object]) -> PermanentError:
    with pytest.raises(PermanentError) as raised:
        parse_request(json.dumps(document).encode())
    return raised.value


def test_up_to_five_problems_are_listed_then_counted() -> None:
    five = _rejected({**request_document(), "a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
    listed = "; ".join(f"{name}: Extra inputs are not permitted" for name in "abcde")
    assert five.message == f"invalid PaymentLinkRequested: {listed}"
    six = _rejected({**request_document(), "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6})
    assert six.message == f"invalid PaymentLinkRequested: {listed}; and 1 more problem(s)"


def test_a_problem_names_its_field_bounded_to_80_characters() -> None:
    assert _rejected({**request_document(), "k" * 80: 1}).message.startswith(
        f"invalid PaymentLinkRequested: {'k' * 80}:"
    )
    long = _rejected({**request_document(), "k" * 81: 1})
    assert long.message == f"invalid PaymentLinkRequested: {'k' * 79}…: Extra inputs are not permitted"


def test_a_problem_of_the_whole_request_is_located_at_request() -> None:
    error = _rejected(request_document(due_date="2030-02-01"))  # and days_until_due
    assert error.reason is Reason.INVALID_DUE_DATE
    assert error.message == (
        "invalid PaymentLinkRequested: request: give exactly one of due_date (YYYY-MM-DD) or days_until_due (1..365)"
    )


def test_a_line_rule_names_the_line_and_its_kind() -> None:
    error = _rejected(request_document(line_items=[{"description": "d", "amount": 99_999_999, "quantity": 2}]))
    assert error.reason is Reason.INVALID_LINE_ITEMS
    assert error.message == (
        "invalid PaymentLinkRequested: line_items.0.amount: amount * quantity must be at most 99999999 minor units"
    )


def test_metadata_rules_and_their_messages() -> None:
    accepted = make_request(metadata={"k" * 40: "v" * 500})
    assert accepted.metadata == {"k" * 40: "v" * 500}
    for key, value, problem in [
        ("k" * 41, "v", "keys must be 1..40 characters"),
        ("a]", "v", "keys must not contain square brackets"),
        ("[a", "v", "keys must not contain square brackets"),
        ("note_id", "v", "is reserved (paylink sets account_id, contact_id, note_id, payment_link_id itself)"),
        ("k", "v" * 501, "values must be at most 500 characters"),
    ]:
        error = _rejected(request_document(metadata={key: value}))
        assert error.message.endswith(f"metadata key {excerpt(key)}: {problem}"), error.message


def test_line_items_given_as_models_keep_their_kind() -> None:
    document = {**request_document(), "occurred_at": datetime(2030, 1, 15, tzinfo=UTC)}
    lines = [PriceLineItem(price_id="price_basic", quantity=2), AmountLineItem(description="Fee", amount=5)]
    request = PaymentLinkRequested.model_validate({**document, "line_items": lines})
    assert request.line_items == lines


NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)


def test_a_due_date_exactly_five_years_ahead_is_accepted_one_day_more_is_not() -> None:
    limit = NOW.date() + timedelta(days=MAX_DUE_DATE_DAYS_AHEAD)
    assert resolve_due_date(make_request(days_until_due=None, due_date=limit.isoformat()), NOW) == limit
    beyond = (limit + timedelta(days=1)).isoformat()
    with pytest.raises(PermanentError) as raised:
        resolve_due_date(make_request(days_until_due=None, due_date=beyond), NOW)
    assert raised.value.reason is Reason.INVALID_DUE_DATE
    assert raised.value.message == f"due_date {beyond} must be at most 1825 days ahead"


@pytest.fixture
def host_in_new_york() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/New_York")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("host_in_new_york")
def test_today_is_the_utc_date_whatever_the_host_time_zone() -> None:
    late_evening_in_new_york = datetime(2030, 1, 15, 22, 0, tzinfo=timezone(timedelta(hours=-5)))  # 03:00 UTC
    with pytest.raises(PermanentError) as raised:
        resolve_due_date(make_request(days_until_due=None, due_date="2030-01-16"), late_evening_in_new_york)
    assert raised.value.message == "due_date 2030-01-16 must be after today (2030-01-16, UTC)"
    assert resolve_due_date(make_request(), late_evening_in_new_york) == date(2030, 1, 30)


# --- customers from contacts -----------------------------------------------------------------------


def test_a_customer_carries_the_contact_email_and_phone_up_to_stripe_limits() -> None:
    at_limits = Contact("c1", "acc_1", name="Ada", email="e" * 512, phone="+" + "1" * 19)
    customer = NewCustomer.from_contact(at_limits)
    assert (customer.email, customer.phone) == ("e" * 512, "+" + "1" * 19)
    assert customer.stripe_params()["email"] == "e" * 512
    over = NewCustomer.from_contact(Contact("c1", "acc_1", email="e" * 513, phone="+" + "1" * 20))
    assert (over.email, over.phone) == (None, None)


def test_a_country_that_is_not_two_letters_is_left_out() -> None:
    contact = Contact("c1", "acc_1", address=ContactAddress(city="Paris", country="1a"))
    address = NewCustomer.from_contact(contact).stripe_params()["address"]
    assert address == {"city": "Paris"}
