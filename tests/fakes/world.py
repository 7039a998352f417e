"""All fakes wired to one saga, with a connected account, a contact and two prices ready."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from domain.errors import RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed, PaymentLinkRequested
from domain.intake import parse_request
from domain.saga import PaymentLinkSaga
from tests.fakes.basics import FakeClock, FakeShortener, SequentialIds
from tests.fakes.billing import FakeBilling
from tests.fakes.crm import FakeCrm
from tests.fakes.stores import FakeOutbox, FakeSagaStore

ACCOUNT = "acc_1"
STRIPE_ACCOUNT = "acct_1"
CONTACT = "64b7f0c2a1b2c3d4e5f60718"
REQUEST_ID = "0b6c6f4e-8a8e-4a53-9a55-4a1a3b2c1d0e"


def request_document(**overrides: Any) -> dict[str, Any]:
    """A valid PaymentLinkRequested as JSON-ready dict; ``overrides`` replace (None removes) fields."""
    document: dict[str, Any] = {
        "event_id": REQUEST_ID,
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": "2030-01-15T09:00:00Z",
        "correlation_id": "corr-1",
        "account_id": ACCOUNT,
        "contact_id": CONTACT,
        "currency": "usd",
        "days_until_due": 14,
        "line_items": [
            {"price_id": "price_basic", "quantity": 2},
            {"description": "Setup fee", "amount": 5000},
        ],
        "note_id": "note-9",
        "metadata": {"deal": "D-42"},
    }
    for key, value in overrides.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def make_request(**overrides: Any) -> PaymentLinkRequested:
    return parse_request(json.dumps(request_document(**overrides)).encode())


@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    crm: FakeCrm = field(default_factory=FakeCrm)
    shortener: FakeShortener = field(default_factory=FakeShortener)
    store: FakeSagaStore = field(default_factory=FakeSagaStore)
    outbox: FakeOutbox = field(default_factory=FakeOutbox)
    ids: SequentialIds = field(default_factory=SequentialIds)
    items_per_call: int = 1
    billing: FakeBilling = field(init=False)

    def __post_init__(self) -> None:
        self.billing = FakeBilling(self.clock)
        self.crm.add_account(ACCOUNT, STRIPE_ACCOUNT)
        self.crm.add_contact(ACCOUNT, CONTACT, name="Ada Lovelace", email="ada@example.com", phone="+15550100")
        self.billing.add_price(STRIPE_ACCOUNT, "price_basic", 1500, "usd")
        self.billing.add_price(STRIPE_ACCOUNT, "price_eur", 900, "eur")

    def saga(self) -> PaymentLinkSaga:
        """A fresh saga on the same fakes (a restarted process)."""
        return PaymentLinkSaga(
            crm=self.crm,
            billing=self.billing,
            shortener=self.shortener,
            store=self.store,
            outbox=self.outbox,
            clock=self.clock,
            ids=self.ids,
            items_per_call=self.items_per_call,
        )


def new_request_id() -> str:
    return str(uuid.uuid4())


async def run_like_worker(
    saga: PaymentLinkSaga, request: PaymentLinkRequested, attempts: int = 3
) -> PaymentLinkCreated | PaymentLinkFailed:
    """What the worker does: retry ``run`` on ``RetryableError``, then ``give_up``."""
    for attempt in range(1, attempts + 1):
        try:
            return await saga.run(request)
        except RetryableError as error:
            if attempt == attempts:
                return await saga.give_up(request, error, attempts)
    raise AssertionError("unreachable")
