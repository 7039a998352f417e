"""Contract of ``Billing`` (domain/ports.py): the same tests on ``FakeBilling`` and on ``StripeBilling`` over the
Stripe emulator.

Every test works on fresh connected accounts (``acct_<random>``), so nothing needs resetting. Emulator
faults are scoped to the test's account and removed afterwards; the one global switch used
(``revoked_accounts``) is restored in a ``finally``.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapters.stripe.billing import StripeBilling, make_stripe_client
from adapters.stripe.rate_limit import AccountRateLimiter
from adapters.system import SystemClock
from consumer.runtime.settings import LOCAL_STRIPE_TEST_KEY
from domain.billing import DraftInvoice, FinalizedInvoice, InvoiceItem, NewCustomer, customer_search_query
from domain.errors import PermanentError, Reason, RetryableError
from domain.ports import Billing
from tests.fakes.billing import FakeBilling


def _account() -> str:
    return f"acct_{uuid.uuid4().hex[:16]}"


def _key(step: str) -> str:
    return f"contract-{step}-{uuid.uuid4().hex}"


class BillingHarness:
    """The port on fresh connected accounts (``account``, ``other``), plus setup and inspection."""

    billing: Billing
    name: str

    def __init__(self) -> None:
        self.account = _account()
        self.other = _account()

    async def add_price(self, account: str, unit_amount: int, currency: str) -> str:
        raise NotImplementedError

    async def count(self, account: str, kind: str) -> int:
        """How many customers/invoices/invoiceitems exist on ``account``."""
        raise NotImplementedError

    def fail_next(self, account: str, call: str, path: str, status: int, *, after_effect: bool = False) -> Any:
        """An async context manager: the next ``call`` on ``account`` fails (before or after its effect)."""
        raise NotImplementedError


class FakeHarness(BillingHarness):
    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.fake = FakeBilling(SystemClock())
        self.billing = self.fake

    async def add_price(self, account: str, unit_amount: int, currency: str) -> str:
        price_id = f"price_{uuid.uuid4().hex[:12]}"
        self.fake.add_price(account, price_id, unit_amount, currency)
        return price_id

    async def count(self, account: str, kind: str) -> int:
        if kind == "customer":
            return sum(1 for c in self.fake.customers.values() if c["stripe_account"] == account)
        invoices = [i for i in self.fake.invoices.values() if i.stripe_account == account]
        return len(invoices) if kind == "invoice" else sum(len(i.items) for i in invoices)

    def fail_next(self, account: str, call: str, path: str, status: int, *, after_effect: bool = False) -> Any:
        fake = self.fake

        class _Fault:
            async def __aenter__(self) -> None:
                error = RetryableError(Reason.STRIPE_UNAVAILABLE, f"injected {status}")
                fake.faults.add(call, error, times=1, after_effect=after_effect)

            async def __aexit__(self, *exc: object) -> None:
                fake.faults.clear()

        return _Fault()


class StripeHarness(BillingHarness):
    name = "stripe"

    def __init__(self, http: httpx.AsyncClient, control: httpx.AsyncClient) -> None:
        super().__init__()
        self.control = control
        client = make_stripe_client(http, LOCAL_STRIPE_TEST_KEY, str(control.base_url).rstrip("/"), timeout_s=5.0)
        self.billing = StripeBilling(client, AccountRateLimiter(rate_per_s=1000, burst=1000))

    async def add_price(self, account: str, unit_amount: int, currency: str) -> str:
        response = await self.control.post(
            "/v1/prices",
            headers={"Authorization": f"Bearer {LOCAL_STRIPE_TEST_KEY}", "Stripe-Account": account},
            data={"product_data[name]": "Contract price", "unit_amount": str(unit_amount), "currency": currency},
        )
        response.raise_for_status()
        return str(response.json()["id"])

    async def count(self, account: str, kind: str) -> int:
        response = await self.control.get("/_emulator/objects", params={"account": account, "type": kind})
        response.raise_for_status()
        return int(response.json()["counts"][kind])

    def fail_next(self, account: str, call: str, path: str, status: int, *, after_effect: bool = False) -> Any:
        control = self.control

        class _Fault:
            fault_id: str | None = None

            async def __aenter__(self) -> None:
                spec = {
                    "path": path,
                    "status": status,
                    "count": 1,
                    "account": account,
                    "phase": "after" if after_effect else "before",
                }
                response = await control.post("/_emulator/faults", json=spec)
                response.raise_for_status()
                self.fault_id = response.json()["id"]

            async def __aexit__(self, *exc: object) -> None:
                if self.fault_id is not None:
                    await control.delete(f"/_emulator/faults/{self.fault_id}")

        return _Fault()

    async def fired(self) -> int:
        faults = (await self.control.get("/_emulator/faults")).json()["data"]
        return sum(f["fired"] for f in faults if f["account"] in (self.account, self.other))


# --- helpers -------------------------------------------------------------------------------------------


def customer(email: str | None = "ada@example.com", phone: str | None = None, name: str = "Ada") -> NewCustomer:
    return NewCustomer(name=name, email=email, phone=phone, address=None, metadata={"contact_id": "con-1"})


def due_in(days: int) -> int:
    return int(time.time()) + days * 86_400


def draft_for(customer_id: str, due_date: int | None = None, currency: str = "usd") -> DraftInvoice:
    return DraftInvoice(
        customer_id=customer_id,
        currency=currency,
        due_date=due_date if due_date is not None else due_in(14),
        description="Contract test invoice",
        metadata={"payment_link_id": str(uuid.uuid4()), "account_id": "acc-1"},
    )


def price_item(index: int, customer_id: str, price_id: str, quantity: int, key: str = "") -> InvoiceItem:
    return InvoiceItem(
        index=index,
        quantity=quantity,
        currency="usd",
        customer_id=customer_id,
        idempotency_key=key or _key(f"item{index}"),
        price_id=price_id,
    )


def amount_item(index: int, customer_id: str, unit_amount: int, quantity: int, key: str = "") -> InvoiceItem:
    return InvoiceItem(
        index=index,
        quantity=quantity,
        currency="usd",
        customer_id=customer_id,
        idempotency_key=key or _key(f"item{index}"),
        description="Setup fee",
        unit_amount=unit_amount,
    )


async def new_customer(h: BillingHarness, account: str | None = None, **fields: Any) -> str:
    return await h.billing.create_customer(account or h.account, customer(**fields), _key("customer"))


async def finalized_invoice(h: BillingHarness) -> tuple[str, FinalizedInvoice]:
    customer_id = await new_customer(h)
    invoice_id = await h.billing.create_draft_invoice(h.account, draft_for(customer_id), _key("draft"))
    await h.billing.add_invoice_items(h.account, invoice_id, [amount_item(0, customer_id, 2500, 2)], _key("items"))
    return invoice_id, await h.billing.finalize_invoice(h.account, invoice_id, _key("finalise"))


# --- customers ----------------------------------------------------------------------------------------------


async def test_create_customer_is_idempotent_on_its_key(stripe: BillingHarness) -> None:
    key = _key("customer")

    first = await stripe.billing.create_customer(stripe.account, customer(), key)
    again = await stripe.billing.create_customer(stripe.account, customer(), key)

    assert first.startswith("cus_") and again == first
    assert await stripe.count(stripe.account, "customer") == 1
    other = await stripe.billing.create_customer(stripe.account, customer(), _key("customer"))
    assert other != first and await stripe.count(stripe.account, "customer") == 2


async def test_a_key_reused_with_other_parameters_is_an_invalid_request(stripe: BillingHarness) -> None:
    key = _key("customer")
    await stripe.billing.create_customer(stripe.account, customer(email="first@example.com"), key)

    with pytest.raises(PermanentError) as raised:
        await stripe.billing.create_customer(stripe.account, customer(email="second@example.com"), key)

    assert raised.value.reason is Reason.STRIPE_INVALID_REQUEST and not raised.value.retryable
    assert await stripe.count(stripe.account, "customer") == 1


async def test_search_customers_by_email_and_by_phone(stripe: BillingHarness) -> None:
    ada = await new_customer(stripe, email="ada@example.com", phone="+15550100")
    bob = await new_customer(stripe, email="bob@example.com", phone="+15550111")
    search = stripe.billing.search_customers

    assert await search(stripe.account, customer_search_query("ada@example.com", None) or "") == [ada]
    assert await search(stripe.account, customer_search_query(None, "+15550111") or "") == [bob]
    either = await search(stripe.account, customer_search_query("ada@example.com", "+15550111") or "")
    assert sorted(either) == sorted([ada, bob])
    assert await search(stripe.account, customer_search_query("nobody@example.com", "+15559999") or "") == []


async def test_search_customers_is_scoped_to_the_connected_account(stripe: BillingHarness) -> None:
    mine = await new_customer(stripe, email="shared@example.com")
    await new_customer(stripe, stripe.other, email="shared@example.com")

    found = await stripe.billing.search_customers(
        stripe.account, customer_search_query("shared@example.com", None) or ""
    )

    assert found == [mine]


@pytest.mark.parametrize(
    ("email", "phone"),
    [
        pytest.param('o"hara@example.com', None, id="quote-in-email"),
        pytest.param("back\\slash@example.com", None, id="backslash-in-email"),
        pytest.param(None, '+1"555\\0100', id="quote-and-backslash-in-phone"),
    ],
)
async def test_search_customers_matches_escaped_values_exactly(
    stripe: BillingHarness, email: str | None, phone: str | None
) -> None:
    await new_customer(stripe, email="plain@example.com", phone="+15550100")
    odd = await new_customer(stripe, email=email or "odd@example.com", phone=phone)

    query = customer_search_query(email, phone)

    assert query is not None and await stripe.billing.search_customers(stripe.account, query) == [odd]


@pytest.mark.parametrize(
    ("email", "phone"),
    [
        pytest.param('x@example.com" OR email:"victim@example.com', None, id="email-injection"),
        pytest.param(None, '+1" OR phone:"+15550199', id="phone-injection"),
        pytest.param('x@example.com\\" OR email:\\"victim@example.com', None, id="escaped-quote-injection"),
    ],
)
async def test_search_customers_cannot_be_widened_by_an_injected_clause(
    stripe: BillingHarness, email: str | None, phone: str | None
) -> None:
    victim = await new_customer(stripe, email="victim@example.com", phone="+15550199")

    query = customer_search_query(email, phone)

    assert query is not None
    found = await stripe.billing.search_customers(stripe.account, query)
    assert victim not in found and found == []


# --- invoices -------------------------------------------------------------------------------------------------


async def test_draft_items_finalize_gives_a_payable_invoice(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    price_id = await stripe.add_price(stripe.account, 1500, "usd")
    due = due_in(14)
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id, due), _key("draft"))
    assert invoice_id.startswith("in_")
    assert await stripe.billing.invoice_status(stripe.account, invoice_id) == "draft"
    items = [price_item(0, customer_id, price_id, 2), amount_item(1, customer_id, 5000, 3)]

    await stripe.billing.add_invoice_items(stripe.account, invoice_id, items, _key("items"))
    invoice = await stripe.billing.finalize_invoice(stripe.account, invoice_id, _key("finalise"))

    assert invoice.id == invoice_id
    assert invoice.status == "open"
    assert invoice.number
    assert invoice.amount_due == 2 * 1500 + 3 * 5000
    assert invoice.currency == "usd"
    assert invoice.due_date == due
    assert invoice.hosted_invoice_url is not None and invoice.hosted_invoice_url.startswith("https://")
    assert invoice.invoice_pdf
    assert await stripe.billing.invoice_status(stripe.account, invoice_id) == "open"
    assert await stripe.count(stripe.account, "invoiceitem") == 2


async def test_a_resent_batch_of_items_adds_no_duplicates(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id), _key("draft"))
    items = [amount_item(0, customer_id, 1000, 1), amount_item(1, customer_id, 700, 2)]
    batch_key = _key("items")

    await stripe.billing.add_invoice_items(stripe.account, invoice_id, items[:1], batch_key)  # cut short
    await stripe.billing.add_invoice_items(stripe.account, invoice_id, items, batch_key)  # re-sent whole
    await stripe.billing.add_invoice_items(stripe.account, invoice_id, items, batch_key)  # and again

    assert await stripe.count(stripe.account, "invoiceitem") == 2
    invoice = await stripe.billing.finalize_invoice(stripe.account, invoice_id, _key("finalise"))
    assert invoice.amount_due == 1000 + 1400


@pytest.mark.parametrize("whose", ["unknown", "other-account"])
async def test_an_unknown_price_is_price_not_found(stripe: BillingHarness, whose: str) -> None:
    customer_id = await new_customer(stripe)
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id), _key("draft"))
    price_id = "price_doesnotexist" if whose == "unknown" else await stripe.add_price(stripe.other, 900, "usd")

    with pytest.raises(PermanentError) as raised:
        await stripe.billing.add_invoice_items(
            stripe.account, invoice_id, [price_item(0, customer_id, price_id, 1)], _key("items")
        )

    assert raised.value.reason is Reason.PRICE_NOT_FOUND and not raised.value.retryable
    assert await stripe.count(stripe.account, "invoiceitem") == 0


@pytest.mark.parametrize("seconds_ago", [3600, 0])
async def test_a_past_due_date_is_invalid_due_date(stripe: BillingHarness, seconds_ago: int) -> None:
    customer_id = await new_customer(stripe)
    past = draft_for(customer_id, due_date=int(time.time()) - seconds_ago)

    with pytest.raises(PermanentError) as raised:
        await stripe.billing.create_draft_invoice(stripe.account, past, _key("draft"))

    assert raised.value.reason is Reason.INVALID_DUE_DATE and not raised.value.retryable
    assert await stripe.count(stripe.account, "invoice") == 0


async def test_a_draft_for_a_customer_without_an_email_is_refused(stripe: BillingHarness) -> None:
    # Why the saga refuses such a contact before any call (contact_missing_email): Stripe would refuse here.
    customer_id = await new_customer(stripe, email=None, phone="+15550100")

    with pytest.raises(PermanentError) as raised:
        await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id), _key("draft"))

    assert raised.value.reason is Reason.STRIPE_INVALID_REQUEST and not raised.value.retryable
    assert "Missing email" in raised.value.message
    assert await stripe.count(stripe.account, "invoice") == 0


@pytest.mark.parametrize("currency", ["xyz", "xts"])
async def test_a_draft_in_a_currency_stripe_does_not_support_is_refused(stripe: BillingHarness, currency: str) -> None:
    customer_id = await new_customer(stripe)

    with pytest.raises(PermanentError) as raised:
        await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id, currency=currency), _key("d"))

    assert raised.value.reason is Reason.STRIPE_INVALID_REQUEST and not raised.value.retryable
    assert f"Invalid currency: {currency}" in raised.value.message
    assert await stripe.count(stripe.account, "invoice") == 0


async def test_finalize_of_a_finalised_invoice_returns_its_state(stripe: BillingHarness) -> None:
    invoice_id, first = await finalized_invoice(stripe)

    assert await stripe.billing.finalize_invoice(stripe.account, invoice_id, _key("finalise")) == first  # new key
    assert await stripe.count(stripe.account, "invoice") == 1


async def test_delete_draft_deletes_and_a_missing_invoice_is_no_error(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id), _key("draft"))
    await stripe.billing.add_invoice_items(stripe.account, invoice_id, [amount_item(0, customer_id, 100, 1)], _key("i"))

    await stripe.billing.delete_draft(stripe.account, invoice_id)

    assert await stripe.billing.invoice_status(stripe.account, invoice_id) is None
    assert await stripe.count(stripe.account, "invoice") == 0
    assert await stripe.count(stripe.account, "invoiceitem") == 0  # its items went with it
    await stripe.billing.delete_draft(stripe.account, invoice_id)  # already gone
    await stripe.billing.delete_draft(stripe.account, "in_doesnotexist")


async def test_void_invoice_voids_and_an_already_void_invoice_is_no_error(stripe: BillingHarness) -> None:
    invoice_id, _ = await finalized_invoice(stripe)
    key = _key("void")

    await stripe.billing.void_invoice(stripe.account, invoice_id, key)
    assert await stripe.billing.invoice_status(stripe.account, invoice_id) == "void"

    await stripe.billing.void_invoice(stripe.account, invoice_id, key)  # a retry with the same key
    await stripe.billing.void_invoice(stripe.account, invoice_id, _key("void"))  # a later compensation
    assert await stripe.billing.invoice_status(stripe.account, invoice_id) == "void"


async def test_invoice_status_is_none_for_a_missing_or_foreign_invoice(stripe: BillingHarness) -> None:
    invoice_id, _ = await finalized_invoice(stripe)

    assert await stripe.billing.invoice_status(stripe.account, "in_doesnotexist") is None
    assert await stripe.billing.invoice_status(stripe.other, invoice_id) is None
    assert await stripe.billing.invoice_status(stripe.account, invoice_id) == "open"


async def test_retrieve_invoice_shows_an_open_invoice_of_a_link(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    due = due_in(14)
    draft = draft_for(customer_id, due)
    invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft, _key("draft"))
    await stripe.billing.add_invoice_items(
        stripe.account, invoice_id, [amount_item(0, customer_id, 2500, 2)], _key("i")
    )
    await stripe.billing.finalize_invoice(stripe.account, invoice_id, _key("finalise"))

    snapshot = await stripe.billing.retrieve_invoice(stripe.account, invoice_id)

    assert snapshot is not None
    assert snapshot.invoice_id == invoice_id and snapshot.status == "open"
    assert snapshot.payment_link_id == draft.metadata["payment_link_id"]
    assert (snapshot.amount_paid, snapshot.amount_remaining, snapshot.currency) == (0, 5000, "usd")
    assert snapshot.due_date == datetime.fromtimestamp(due, UTC).date()
    assert (snapshot.paid_at, snapshot.voided_at, snapshot.marked_uncollectible_at) == (None, None, None)
    assert not snapshot.paid_out_of_band and snapshot.attempt_count == 0 and snapshot.failure_message is None


async def test_retrieve_invoice_shows_a_voided_invoice(stripe: BillingHarness) -> None:
    invoice_id, _ = await finalized_invoice(stripe)
    before = datetime.now(UTC).replace(microsecond=0)
    await stripe.billing.void_invoice(stripe.account, invoice_id, _key("void"))

    snapshot = await stripe.billing.retrieve_invoice(stripe.account, invoice_id)

    assert snapshot is not None and snapshot.status == "void" and snapshot.amount_remaining == 0
    if isinstance(stripe, StripeHarness):  # the fake keeps no transition times
        assert snapshot.voided_at is not None and before <= snapshot.voided_at <= datetime.now(UTC)


async def test_retrieve_invoice_is_none_for_a_missing_or_foreign_invoice(stripe: BillingHarness) -> None:
    invoice_id, _ = await finalized_invoice(stripe)

    assert await stripe.billing.retrieve_invoice(stripe.account, "in_doesnotexist") is None
    assert await stripe.billing.retrieve_invoice(stripe.other, invoice_id) is None


@pytest.mark.parametrize("status", [500, 429])
async def test_retrieve_invoice_faults_are_retryable(stripe: BillingHarness, status: int) -> None:
    invoice_id, _ = await finalized_invoice(stripe)

    async with stripe.fail_next(stripe.account, "retrieve_invoice", f"/v1/invoices/{invoice_id}", status):
        with pytest.raises(RetryableError) as raised:
            await stripe.billing.retrieve_invoice(stripe.account, invoice_id)

    assert raised.value.reason is Reason.STRIPE_UNAVAILABLE
    snapshot = await stripe.billing.retrieve_invoice(stripe.account, invoice_id)
    assert snapshot is not None and snapshot.status == "open"


# --- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429, 409, 0])
async def test_a_transient_fault_is_retryable_and_a_retry_creates_one_object(
    stripe: BillingHarness, status: int
) -> None:
    key = _key("customer")

    async with stripe.fail_next(stripe.account, "create_customer", "/v1/customers", status):
        with pytest.raises(RetryableError) as raised:
            await stripe.billing.create_customer(stripe.account, customer(), key)
        if isinstance(stripe, StripeHarness):
            assert await stripe.fired() == 1
        retried = await stripe.billing.create_customer(stripe.account, customer(), key)

    assert raised.value.reason is Reason.STRIPE_UNAVAILABLE
    assert retried.startswith("cus_")
    assert await stripe.count(stripe.account, "customer") == 1


async def test_a_lost_response_is_retryable_and_the_retry_returns_the_same_object(stripe: BillingHarness) -> None:
    customer_id = await new_customer(stripe)
    key = _key("draft")
    draft = draft_for(customer_id)

    async with stripe.fail_next(stripe.account, "create_draft_invoice", "/v1/invoices", 500, after_effect=True):
        with pytest.raises(RetryableError):
            await stripe.billing.create_draft_invoice(stripe.account, draft, key)
        invoice_id = await stripe.billing.create_draft_invoice(stripe.account, draft, key)

    assert await stripe.count(stripe.account, "invoice") == 1
    assert await stripe.billing.invoice_status(stripe.account, invoice_id) == "draft"


@pytest.fixture
def real_stripe(emulator: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> StripeHarness:
    """The real adapter only: revoking account access is Stripe's behaviour, which the fake does not model."""
    return StripeHarness(*emulator)


@pytest.mark.integration
async def test_a_revoked_account_is_permission_denied(real_stripe: StripeHarness) -> None:
    stripe = real_stripe
    customer_id = await new_customer(stripe)
    await revoke(stripe.control, stripe.account)
    try:
        for call in (
            stripe.billing.create_customer(stripe.account, customer(), _key("customer")),
            stripe.billing.search_customers(stripe.account, 'email:"ada@example.com"'),
            stripe.billing.create_draft_invoice(stripe.account, draft_for(customer_id), _key("draft")),
        ):
            with pytest.raises(PermanentError) as raised:
                await call
            assert raised.value.reason is Reason.STRIPE_PERMISSION_DENIED and not raised.value.retryable
    finally:
        await restore(stripe.control, stripe.account)
    assert await stripe.count(stripe.account, "customer") == 1
    assert await stripe.count(stripe.account, "invoice") == 0


async def revoke(control: httpx.AsyncClient, account: str) -> None:
    revoked = (await control.get("/_emulator/config")).json()["revoked_accounts"]
    (await control.post("/_emulator/config", json={"revoked_accounts": [*revoked, account]})).raise_for_status()


async def restore(control: httpx.AsyncClient, account: str) -> None:
    """Removes only our account, keeping whatever other tests revoked meanwhile."""
    revoked = (await control.get("/_emulator/config")).json()["revoked_accounts"]
    kept = [a for a in revoked if a != account]
    (await control.post("/_emulator/config", json={"revoked_accounts": kept})).raise_for_status()
