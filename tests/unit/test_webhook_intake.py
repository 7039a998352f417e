"""``paylink webhooks`` over HTTP (aiohttp's test server), on the fakes: what each delivery gets back and
what it leaves in the outbox. Signatures are made exactly as Stripe makes them and checked by
stripe-python; the end-to-end path with the emulator and Kafka is in ``tests/integration``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.stripe.webhooks import StripeWebhooks
from consumer.app.retry import RetryPolicy
from consumer.app.webhooks import WebhookIntake
from consumer.runtime.bootstrap import metrics_registry
from consumer.runtime.health import Readiness
from consumer.runtime.webhooks import MAX_BODY_BYTES, WEBHOOK_PATH, IntakeSlot, build_app
from domain.errors import Reason, RetryableError
from domain.events import PaymentLinkCreated
from domain.lifecycle_events import PaymentLinkPaid, Source, Transition, lifecycle_event_id
from domain.lifecycle_service import LinkLifecycle
from domain.saga_record import SagaRecord
from tests.fakes.faults import SimulatedCrash
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import REQUEST_ID, STRIPE_ACCOUNT, World, make_request

OLD_SECRET, NEW_SECRET = "whsec_old_0123456789", "whsec_new_9876543210"


def signed(body: bytes, secret: str, at: int | None = None) -> str:
    stamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


@dataclass
class Hooks:
    world: World
    lifecycles: FakeLifecycleStore
    client: TestClient[Any, Any]
    invoice_id: str
    ready_problem: str | None = None

    def event(self, kind: str, status: str, *, account: str = STRIPE_ACCOUNT, **invoice: Any) -> dict[str, Any]:
        obj = {
            "id": self.invoice_id,
            "object": "invoice",
            "status": status,
            "currency": "usd",
            "amount_paid": 8000 if status == "paid" else 0,
            "amount_remaining": 0 if status == "paid" else 8000,
            "metadata": {"payment_link_id": REQUEST_ID},
            "status_transitions": {"paid_at": 1_900_000_000 if status == "paid" else None},
            **invoice,
        }
        number = len(self.world.outbox.events) + len(self.lifecycles.documents)
        return {"id": f"evt_{kind}_{number}_{status}", "object": "event", "type": kind, "created": 1_900_000_000,
                "account": account, "data": {"object": obj}}  # fmt: skip

    async def deliver(self, event: dict[str, Any] | bytes, secret: str = NEW_SECRET, **headers: str) -> tuple[int, Any]:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        sent = {"Stripe-Signature": signed(body, secret), "Content-Type": "application/json", **headers}
        # A BytesIO: aiohttp warns (ResourceWarning) when a large raw bytes body is posted.
        response = await self.client.post(WEBHOOK_PATH, data=io.BytesIO(body), headers=sent)
        return response.status, await response.json(content_type=None) if response.status != 413 else None

    def lifecycle_events(self) -> list[Any]:
        results = ("PaymentLinkCreated", "PaymentLinkFailed")
        return [event for event in self.world.outbox.ordered if event.event_type not in results]


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    world = World()
    created = await world.saga().run(make_request())
    assert isinstance(created, PaymentLinkCreated)
    lifecycles = FakeLifecycleStore()
    lifecycle = LinkLifecycle(sagas=world.store, store=lifecycles, outbox=world.outbox, clock=world.clock)
    intake = WebhookIntake(StripeWebhooks([OLD_SECRET, NEW_SECRET]), lifecycle, RetryPolicy(2, 0.001, 0.001))
    state = Hooks(world, lifecycles, None, created.invoice_id)  # type: ignore[arg-type]

    async def ready() -> str | None:
        return state.ready_problem

    async with TestClient(TestServer(build_app(intake, ready, metrics_registry("webhooks")))) as client:
        state.client = client
        yield state


async def test_a_paid_invoice_becomes_one_paid_event_signed_with_either_secret(hooks: Hooks) -> None:
    status, body = await hooks.deliver(hooks.event("invoice.paid", "paid"), secret=OLD_SECRET)
    assert (status, body) == (200, {"result": "applied"})
    (paid,) = [e for e in hooks.world.outbox.ordered if isinstance(e, PaymentLinkPaid)]
    assert paid.event_id == lifecycle_event_id(REQUEST_ID, Transition.PAID)
    assert (paid.source, paid.amount_paid, paid.stripe_account) == (Source.WEBHOOK, 8000, STRIPE_ACCOUNT)
    assert (await hooks.deliver(hooks.event("invoice.paid", "paid"), secret=NEW_SECRET))[0] == 200


async def test_a_redelivered_event_changes_nothing(hooks: Hooks) -> None:
    event = hooks.event("invoice.paid", "paid")
    assert (await hooks.deliver(event))[1] == {"result": "applied"}
    before = list(hooks.world.outbox.ordered)
    assert await hooks.deliver(event) == (200, {"result": "duplicate"})
    assert hooks.world.outbox.ordered == before


async def test_a_late_uncollectible_after_paid_never_moves_the_link_back(hooks: Hooks) -> None:
    await hooks.deliver(hooks.event("invoice.paid", "paid"))
    status, body = await hooks.deliver(hooks.event("invoice.marked_uncollectible", "uncollectible"))
    assert (status, body) == (200, {"result": "unchanged"})
    assert [e.event_type for e in hooks.lifecycle_events()] == ["PaymentLinkPaid"]


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "missing"),
        ("t=1,v1=deadbeef", "forged"),
        ("expired", "older than the 300 s tolerance"),
        ("wrong-secret", "another endpoint's secret"),
    ],
)
async def test_a_bad_signature_is_400_and_stores_nothing(
    hooks: Hooks, signature: str | None, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(hooks.event("invoice.paid", "paid")).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "expired":
        headers["Stripe-Signature"] = signed(body, NEW_SECRET, at=int(time.time()) - 301)
    elif signature == "wrong-secret":
        headers["Stripe-Signature"] = signed(body, "whsec_somebody_else")
    elif signature is not None:
        headers["Stripe-Signature"] = signature
    with caplog.at_level(logging.INFO):
        response = await hooks.client.post(WEBHOOK_PATH, data=body, headers=headers)
    assert response.status == 400, why
    assert hooks.lifecycles.documents == {} and hooks.lifecycle_events() == []
    assert "whsec_" not in caplog.text and "v1=" not in caplog.text, "no secret or signature in the logs"


async def test_signed_garbage_is_400(hooks: Hooks) -> None:
    assert (await hooks.deliver(b"{not json"))[0] == 400
    assert (await hooks.deliver(b'{"object": "event"}'))[0] == 400, "no id or type"
    event = hooks.event("invoice.paid", "paid")
    event["data"] = {"object": "not an invoice"}
    assert (await hooks.deliver(event))[0] == 400


async def test_a_body_over_one_mebibyte_is_413(hooks: Hooks) -> None:
    status, _ = await hooks.deliver(b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413


async def test_other_event_types_are_acknowledged_and_ignored(hooks: Hooks) -> None:
    event = {"id": "evt_c", "object": "event", "type": "customer.created", "account": STRIPE_ACCOUNT, "data": {}}
    assert await hooks.deliver(event) == (200, {"result": "unhandled_type"})
    platform = hooks.event("invoice.paid", "paid")
    del platform["account"]  # the platform's own invoice: links live on connected accounts
    assert await hooks.deliver(platform) == (200, {"result": "platform_event"})
    assert hooks.lifecycles.documents == {}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"account": "acct_another_tenant"}, "an event of another connected account"),
        ({"id": "in_not_the_links_invoice"}, "another invoice naming the link"),
        ({"metadata": {}}, "an invoice that is no payment link's"),
        ({"metadata": {"payment_link_id": "f0e5a8c0-0000-4000-8000-000000000000"}}, "an unknown link"),
    ],
)
async def test_foreign_or_unknown_invoices_never_move_a_link(hooks: Hooks, change: dict[str, Any], why: str) -> None:
    invoice = dict(change)  # the parameter is shared between runs: never mutate it
    account = invoice.pop("account", STRIPE_ACCOUNT)
    status, body = await hooks.deliver(hooks.event("invoice.paid", "paid", account=account, **invoice))
    assert (status, body["result"]) == (200, "ignored"), why
    assert hooks.lifecycle_events() == []


async def test_an_event_for_a_link_still_being_created_is_503_so_stripe_retries(hooks: Hooks) -> None:
    running = make_request(event_id="7d4f3b1a-2c5e-4a6b-8c9d-0e1f2a3b4c5d")
    await hooks.world.store.create_if_absent(SagaRecord.start(running, hooks.world.clock.now()))
    event = hooks.event("invoice.paid", "paid", metadata={"payment_link_id": running.event_id})
    status, body = await hooks.deliver(event)
    assert (status, body["result"]) == (503, "pending")


async def test_a_store_that_keeps_failing_is_503_and_a_retry_then_applies(hooks: Hooks) -> None:
    hooks.lifecycles.faults.add("save", RetryableError(Reason.INTERNAL_ERROR, "store down"), times=2)
    event = hooks.event("invoice.paid", "paid")
    assert (await hooks.deliver(event))[0] == 503
    assert (await hooks.deliver(event)) == (200, {"result": "applied"})
    assert [e.event_type for e in hooks.lifecycle_events()] == ["PaymentLinkPaid"]


async def test_health_and_readiness(hooks: Hooks) -> None:
    assert (await hooks.client.get("/healthz")).status == 200
    assert (await hooks.client.get("/readyz")).status == 200
    hooks.ready_problem = "MongoDB does not answer"
    assert (await hooks.client.get("/readyz")).status == 503
    metrics = await (await hooks.client.get("/metrics")).text()
    assert "paylink_webhooks_total" in metrics
    assert "paylink_in_flight_sagas" not in metrics and "_created" not in metrics, "its own metrics only"


async def test_deliveries_before_mongodb_answers_are_503_while_health_is_served() -> None:
    readiness = Readiness()
    readiness.waiting_for = "MongoDB"
    async with TestClient(TestServer(build_app(IntakeSlot(), readiness, metrics_registry("webhooks")))) as client:
        assert (await client.get("/healthz")).status == 200
        not_ready = await client.get("/readyz")
        assert (not_ready.status, await not_ready.text()) == (503, "not ready: waiting for MongoDB\n")
        assert (await client.post(WEBHOOK_PATH, data=b"{}")).status == 503, "Stripe retries it later"


async def test_a_crash_after_the_outbox_write_before_the_answer_changes_nothing_on_stripes_retry(
    hooks: Hooks,
) -> None:
    # A first event that moves nothing creates the link's record (appending PaymentLinkCreated again).
    assert (await hooks.deliver(hooks.event("invoice.marked_uncollectible", "open")))[0] == 200
    hooks.world.outbox.faults.add("append", SimulatedCrash("the process died here"), after_effect=True, times=1)
    event = hooks.event("invoice.paid", "paid")
    status, _ = await hooks.deliver(event)
    assert status == 500, "no 2xx: Stripe delivers the event again"

    def paid() -> int:
        return [e.event_type for e in hooks.lifecycle_events()].count("PaymentLinkPaid")

    assert paid() == 1, "the event was written"
    assert await hooks.deliver(event) == (200, {"result": "duplicate"})
    assert paid() == 1, "and is not written twice"
    (stored,) = hooks.lifecycles.documents.values()
    assert all(entry["appended"] for entry in stored["history"]), "the retry finished the bookkeeping"
