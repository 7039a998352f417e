"""Cancelling links end to end on the real stack: Kafka in (``paylink cancel`` or a produced event), the
worker against the Stripe emulator, the outbox, the relay, Kafka out; ``paylink replay`` for a cancel whose
retries ran out. Invariants are checked on the emulator's invoices, not on logs."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import wait_until
from tests.integration.cli_helpers import paylink, stripe_fault
from tests.integration.harness import (
    STRIPE_HEADERS,
    ResultCollector,
    Tenant,
    produce,
    request,
    running_pipeline,
    seed_tenant,
    stripe_objects,
)

Event = dict[str, Any]
ADA = {"ada": {"name": "Ada Lovelace", "email": "ada@example.com"}}


class Events(ResultCollector):
    """Every event of the results topic, in order (``ResultCollector`` keeps one per link)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.seen: list[Event] = []

    async def __aenter__(self) -> Events:
        await super().__aenter__()
        return self

    async def first(self, match: Callable[[Event], bool], timeout_s: float = 60.0) -> Event:
        assert self._consumer is not None
        async with asyncio.timeout(timeout_s):
            while True:
                found = [event for event in self.seen if match(event)]
                if found:
                    return found[0]
                batch = await self._consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    self.seen.extend(json.loads(record.value) for record in records)

    async def result_of(self, link: str) -> Event:
        return await self.first(lambda e: e["payment_link_id"] == link and "cancel_request_id" not in e)

    async def answer_to(self, cancel_id: str, timeout_s: float = 60.0) -> Event:
        return await self.first(lambda e: e.get("cancel_request_id") == cancel_id, timeout_s)

    def about(self, cancel_id: str) -> list[Event]:
        return [event for event in self.seen if event.get("cancel_request_id") == cancel_id]


def cancel_of(tenant: Tenant, link: Event, **fields: Any) -> Event:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentLinkCancelRequested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": f"cancel-{uuid.uuid4().hex[:6]}",
        "account_id": tenant.account_id,
        "payment_link_id": link["payment_link_id"],
        "contact_id": link["contact_id"],
        **fields,
    }


async def invoice_status(stripe_base: str, tenant: Tenant, invoice_id: str) -> str:
    invoices = await stripe_objects(stripe_base, tenant.stripe_account, "invoice")
    return str(next(invoice["status"] for invoice in invoices if invoice["id"] == invoice_id))


async def void_calls(stripe_base: str) -> int:
    async with httpx.AsyncClient(base_url=stripe_base) as control:
        stats = (await control.get("/_emulator/stats")).json()["requests"]
    return sum(n for name, n in stats.items() if name.startswith("POST /v1/invoices/{id}/void 200"))


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(retry_attempts=4, retry_initial_s=0.05, retry_max_s=0.2)


def database(client: AsyncMongoClient[dict[str, Any]], settings: Settings) -> Any:
    return client[settings.mongodb_uri.rsplit("/", 1)[1]]


async def test_every_cancel_outcome_end_to_end(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, ADA)
    other = await seed_tenant(db, stripe_api_base, {"eve": {"email": "eve@example.com"}})
    bodies = {name: request(tenant, "ada") for name in ("open", "paid", "kept")}
    bodies["failed"] = request(tenant, "con-nobody")
    async with running_pipeline(stack), Events(stack) as events:
        await produce(stack, list(bodies.values()))
        links = {name: await events.result_of(body["event_id"]) for name, body in bodies.items()}
        assert [links[n]["event_type"] for n in bodies] == ["PaymentLinkCreated"] * 3 + ["PaymentLinkFailed"]
        async with httpx.AsyncClient(base_url=stripe_api_base, headers=STRIPE_HEADERS) as stripe:
            paid = await stripe.post(
                f"/v1/invoices/{links['paid']['invoice_id']}/pay",
                data={"paid_out_of_band": "true"},
                headers={"Stripe-Account": tenant.stripe_account},
            )
            assert paid.status_code == 200 and paid.json()["status"] == "paid"
        voids_before = await void_calls(stripe_api_base)

        # The open link, through `paylink cancel` (its contact looked up from the saga).
        sent = await paylink(
            stack, "cancel", "--payment-link-id", links["open"]["payment_link_id"], "--account", tenant.account_id
        )
        assert sent.code == 0, sent.err
        open_cancel = sent.out.strip()
        unknown = await paylink(stack, "cancel", "--payment-link-id", str(uuid.uuid4()), "--account", tenant.account_id)
        assert unknown.code == 2 and "no payment link" in unknown.err and unknown.out == ""
        foreign = [links["kept"]["payment_link_id"], "--account", other.account_id]
        assert (await paylink(stack, "cancel", "--payment-link-id", *foreign)).code == 2  # not its tenant's link
        cancels = {
            "paid": cancel_of(tenant, links["paid"]),
            "failed": cancel_of(tenant, {**links["failed"], "contact_id": tenant.contacts["ada"]["_id"]}),
            "other_tenant": cancel_of(other, links["kept"]),
        }
        await produce(stack, list(cancels.values()))
        answers = {name: await events.answer_to(cancel["event_id"]) for name, cancel in cancels.items()}
        voided = await events.answer_to(open_cancel)

        assert voided["event_type"] == "PaymentLinkVoided", voided
        assert (voided["source"], voided["payment_link_id"]) == ("cancel", links["open"]["payment_link_id"])
        assert voided["invoice_id"] == links["open"]["invoice_id"]
        expected = {"paid": "already_paid", "failed": "not_created", "other_tenant": "payment_link_not_found"}
        for name, reason in expected.items():
            answer = answers[name]
            assert answer["event_type"] == "PaymentLinkCancelRejected", answer
            assert (answer["reason"], answer["retryable"], answer["attempt"]) == (reason, False, 1), answer
            assert answer["account_id"] == cancels[name]["account_id"]
            assert answer["correlation_id"] == cancels[name]["correlation_id"]

        # A duplicate cancel (redelivered, or re-sent) publishes nothing new and voids nothing more.
        await produce(stack, [cancel_of(tenant, links["open"], event_id=open_cancel)])
        marker = cancel_of(tenant, links["paid"])
        await produce(stack, [marker])  # same contact, so it is handled after the duplicate
        await events.answer_to(marker["event_id"])

    assert {e["event_id"] for e in events.about(open_cancel)} == {voided["event_id"]}
    assert await invoice_status(stripe_api_base, tenant, links["open"]["invoice_id"]) == "void"
    assert await invoice_status(stripe_api_base, tenant, links["paid"]["invoice_id"]) == "paid"
    assert await invoice_status(stripe_api_base, tenant, links["kept"]["invoice_id"]) == "open"
    assert await void_calls(stripe_api_base) - voids_before == 1
    # At least once: a re-reported result may be published again, always with the same event_id.
    assert {e["event_id"] for e in events.seen if e["event_type"] == "PaymentLinkVoided"} == {voided["event_id"]}


async def test_a_cancel_racing_its_links_creation_waits_for_it_then_voids(
    pipeline_stack: StackFactory,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    stripe_api_base: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A retry budget well beyond the creation's time: the unordered cancel waits it out.
    stack = await pipeline_stack(retry_attempts=10, retry_initial_s=0.2, retry_max_s=1.0)
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, ADA)
    body = request(tenant, "ada")
    link = {"payment_link_id": body["event_id"], "contact_id": body["contact_id"]}
    ordered = cancel_of(tenant, link)  # keyed by the link's contact: handled after the request
    # Another contact key (as if produced on another partition, to another worker): not ordered after it.
    unordered = cancel_of(tenant, {**link, "contact_id": "con-elsewhere"})
    slow = {"path": "/v1/invoices/{id}/finalize", "latency_ms": 1500}

    async def saga_started() -> bool:
        return await db["sagas"].find_one({"_id": body["event_id"]}) is not None

    with caplog.at_level(logging.INFO, logger="paylink.retry"):
        async with (
            stripe_fault(stripe_api_base, tenant.stripe_account, **slow),
            running_pipeline(stack),
            Events(stack) as events,
        ):
            await produce(stack, [body, ordered])
            await wait_until(saga_started, 30, "the link's saga to start")
            await produce(stack, [unordered])
            created = await events.result_of(body["event_id"])
            answers = [await events.answer_to(cancel["event_id"]) for cancel in (ordered, unordered)]

    assert created["event_type"] == "PaymentLinkCreated"
    waited = [r for r in caplog.records if r.__dict__.get("cancel_request_id") == unordered["event_id"]]
    assert waited and all(r.getMessage() == "transient failure; retrying" for r in waited)
    by_type = sorted(answers, key=lambda e: e["event_type"])
    assert [e["event_type"] for e in by_type] == ["PaymentLinkCancelRejected", "PaymentLinkVoided"], answers
    assert by_type[0]["reason"] == "already_void"
    assert events.seen.index(created) < events.seen.index(by_type[1])  # created, then voided
    assert await invoice_status(stripe_api_base, tenant, created["invoice_id"]) == "void"


async def test_stripe_down_until_retries_run_out_then_replay_voids(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = database(mongo_client, stack)
    tenant = await seed_tenant(db, stripe_api_base, ADA)
    body = request(tenant, "ada")
    async with running_pipeline(stack), Events(stack) as events:
        await produce(stack, [body])
        created = await events.result_of(body["event_id"])
        cancel = cancel_of(tenant, created)
        down = {"path": "/v1/invoices/{id}/void", "method": "POST", "status": 500}
        async with stripe_fault(stripe_api_base, tenant.stripe_account, **down):
            await produce(stack, [cancel])
            rejected = await events.answer_to(cancel["event_id"])
        assert rejected["event_type"] == "PaymentLinkCancelRejected", rejected
        assert (rejected["reason"], rejected["retryable"], rejected["attempt"]) == ("stripe_unavailable", True, 1)
        assert await invoice_status(stripe_api_base, tenant, created["invoice_id"]) == "open"

        replayed = await paylink(stack, "replay", "--event-id", cancel["event_id"])
        assert replayed.code == 0, replayed.out + replayed.err
        assert "voided" in replayed.out and "cancels voided 1" in replayed.out
        voided = await events.first(
            lambda e: e.get("cancel_request_id") == cancel["event_id"] and e["event_type"] == "PaymentLinkVoided"
        )

    assert (voided["source"], voided["invoice_id"]) == ("cancel", created["invoice_id"])
    assert await invoice_status(stripe_api_base, tenant, created["invoice_id"]) == "void"
    again = await paylink(stack, "replay", "--event-id", cancel["event_id"])
    assert again.code == 0 and "skipped" in again.out
