"""`paylink replay` end to end: a Stripe outage leaves retryable failures; once the emulator's fault is
cleared, a replay chosen by reason and account turns them into created links that the relay publishes.
A replay killed mid-saga leaves sagas running; `--event-id` finishes the abandoned ones.
The CLI runs as a subprocess: its exit codes and output are what operators and scripts rely on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from domain.saga_record import TIMESTAMP_FORMAT
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, wait_until
from tests.integration.cli_helpers import paylink, stripe_fault
from tests.integration.harness import (
    ResultCollector,
    produce,
    request,
    running_pipeline,
    seed_tenant,
    stripe_objects,
)

CONTACTS = {"ada": {"name": "Ada Lovelace", "email": "ada@example.com"}, "bob": {"name": "Bob", "email": "b@x.io"}}


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(retry_attempts=2)


async def wait_for_created(settings: Settings, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The latest result of each id, waiting (relay only) until every one is PaymentLinkCreated."""
    async with running_pipeline(settings, workers=0), ResultCollector(settings) as collector:
        await collector.wait_for(ids)
        while any(collector.results[i]["event_type"] != "PaymentLinkCreated" for i in ids):
            for i in [i for i in ids if collector.results[i]["event_type"] != "PaymentLinkCreated"]:
                collector.results.pop(i)
            await collector.wait_for(ids)
        return {i: collector.results[i] for i in ids}


async def test_replay_by_reason_and_account_creates_the_links_after_an_outage(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS)
    outage = [request(tenant, "ada"), request(tenant, "bob")]
    missing = request(tenant, "con-missing")
    ids = {body["event_id"] for body in outage}
    outage_fault = stripe_fault(stripe_api_base, tenant.stripe_account, method="POST", path="/v1/invoices", status=500)
    async with outage_fault, running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, [*outage, missing])
        first = await collector.wait_for(ids | {missing["event_id"]})
    assert {first[i]["reason"] for i in ids} == {"stripe_unavailable"}
    assert all(first[i]["retryable"] for i in ids)
    assert first[missing["event_id"]]["reason"] == "contact_not_found"

    selection = ["--reason", "stripe_unavailable", "--account", tenant.account_id]
    dry = await paylink(stack, "replay", *selection, "--dry-run")
    assert dry.code == 0, dry.err
    assert all(i in dry.out for i in ids) and missing["event_id"] not in dry.out
    assert "2 of 2 would be replayed" in dry.out
    assert await db["sagas"].count_documents({"_id": {"$in": list(ids)}, "status": "failed"}) == 2

    ran = await paylink(stack, "replay", *selection)
    assert ran.code == 0, ran.out + ran.err
    assert "replayed 2 (created 2, failed again 0)" in ran.out
    assert "failed to enqueue 0" in ran.out
    assert "\r" not in ran.err, "no progress bar when stderr is not a terminal"
    created = await wait_for_created(stack, ids)
    assert all(result["invoice_id"].startswith("in_") for result in created.values())
    assert {result["attempt"] for result in first.values() if result["payment_link_id"] in ids} == {1}

    # Replaying again is harmless: nothing matches the filter any more, and by id they are skipped.
    again = await paylink(stack, "replay", *selection)
    assert (again.code, "replayed 0" in again.out) == (0, True)
    by_id = await paylink(stack, "replay", *(arg for i in sorted(ids) for arg in ("--event-id", i)))
    assert by_id.code == 0 and "already succeeded 2" in by_id.out, by_id.out

    # A permanent failure whose cause is still there fails again: exit 1; an unknown id: exit 1.
    still = await paylink(stack, "replay", "--event-id", missing["event_id"])
    assert still.code == 1 and "failed again 1: contact_not_found 1" in still.out, still.out
    unknown = await paylink(stack, "replay", "--event-id", str(uuid.uuid4()))
    assert unknown.code == 1 and "not found 1" in unknown.out


async def fault_fired(stripe_base: str, fault_id: str) -> int:
    async with httpx.AsyncClient(base_url=stripe_base) as control:
        response = await control.get("/_emulator/faults")
        response.raise_for_status()
    body = response.json()
    faults = body["data"] if isinstance(body, dict) else body
    return int(next(fault["fired"] for fault in faults if fault["id"] == fault_id))


async def test_replay_by_id_finishes_a_saga_a_killed_replay_left_running(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(db, stripe_api_base, CONTACTS)
    abandoned, fresh = request(tenant, "ada"), request(tenant, "bob")
    ids = [abandoned["event_id"], fresh["event_id"]]
    finalise = "/v1/invoices/{id}/finalize"
    # Finalising is down: both requests fail retryably with their draft and items in Stripe.
    down = stripe_fault(stripe_api_base, tenant.stripe_account, method="POST", path=finalise, status=500)
    async with down, running_pipeline(stack), ResultCollector(stack) as collector:
        await produce(stack, [abandoned, fresh])
        first = await collector.wait_for(set(ids))
    assert {(r["reason"], r["failed_step"]) for r in first.values()} == {("stripe_unavailable", "finalise")}

    # A replay of both is SIGKILLed while its finalise calls hang in Stripe (the hung calls then
    # answer 500, so nothing executes behind the dead process's back): both sagas stay running.
    hang = stripe_fault(
        stripe_api_base, tenant.stripe_account, method="POST", path=finalise, status=500, latency_ms=30_000
    )
    async with hang as hanging:
        replay = PaylinkProcess("replay", stack, tmp_path, "--event-id", ids[0], "--event-id", ids[1]).start()
        try:

            async def both_in_finalise() -> bool:
                return await fault_fired(stripe_api_base, hanging["id"]) >= 2

            await wait_until(both_in_finalise, 30, "the replay's two finalise calls")
        finally:
            replay.kill()
    stuck = {doc["_id"]: doc async for doc in db["sagas"].find({"_id": {"$in": ids}})}
    assert {(doc["status"], doc["attempt"]) for doc in stuck.values()} == {("running", 2)}
    # One was killed an hour ago (abandoned); the other just now (a runner could still be on it).
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime(TIMESTAMP_FORMAT)
    await db["sagas"].update_one({"_id": ids[0]}, {"$set": {"updated_at": an_hour_ago}})

    dry = await paylink(stack, "replay", "--event-id", ids[0], "--event-id", ids[1], "--dry-run")
    assert dry.code == 0 and "running (abandoned)" in dry.out and "1 of 2 would be replayed" in dry.out, dry.out
    by_filter = await paylink(stack, "replay", "--account", tenant.account_id, "--dry-run")
    assert "0 of 0 would be replayed" in by_filter.out, "filters never take running sagas"

    ran = await paylink(stack, "replay", "--event-id", ids[0], "--event-id", ids[1])
    assert ran.code == 0, ran.out + ran.err
    assert "replayed 1 (created 1, failed again 0)" in ran.out and "still running 1" in ran.out, ran.out
    created = (await wait_for_created(stack, {ids[0]}))[ids[0]]
    invoices = [
        invoice
        for invoice in await stripe_objects(stripe_api_base, tenant.stripe_account, "invoice")
        if invoice["metadata"].get("payment_link_id") == ids[0]
    ]
    assert [(invoice["id"], invoice["status"]) for invoice in invoices] == [(created["invoice_id"], "open")]
    assert created["amount_due"] == 24000 and len(invoices[0]["lines"]["data"]) == 1
    after = {doc["_id"]: (doc["status"], doc["attempt"]) async for doc in db["sagas"].find({"_id": {"$in": ids}})}
    assert after == {ids[0]: ("created", 3), ids[1]: ("running", 2)}


async def test_replay_usage_and_unreachable_exit_codes(stack: Settings) -> None:
    assert (await paylink(stack, "replay")).code == 2
    assert (await paylink(stack, "replay", "--event-id", "x", "--reason", "stripe_unavailable")).code == 2
    assert (await paylink(stack, "replay", "--reason", "no_such_reason")).code == 2
    nowhere = stack.model_copy(update={"mongodb_uri": "mongodb://127.0.0.1:1/paylink?serverSelectionTimeoutMS=300"})
    unreachable = await paylink(nowhere, "replay", "--all")
    assert unreachable.code == 3, unreachable.err
    assert "unreachable" in unreachable.err
