"""`paylink topics create`, `paylink publish` and `paylink status` end to end: requests published with the
CLI are processed by a worker while no relay runs, so the outbox fills; `status` must report that backlog,
the consumer group's per-partition lag and the sagas' outcomes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import wait_until
from tests.integration.cli_helpers import paylink
from tests.integration.harness import ResultCollector, request, running_pipeline, seed_tenant


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(with_topics=False)


async def test_publish_then_status_reports_the_backlog_lag_and_outcomes(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    created = await paylink(stack, "topics", "create")
    assert created.code == 0 and created.out.count(": created") == 2, created.out + created.err
    again = await paylink(stack, "topics", "create")
    assert again.code == 0 and again.out.count(": exists") == 2, "topics create is idempotent"

    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(
        db, stripe_api_base, {"ada": {"name": "Ada", "email": "ada@example.com"}}, prices={"Plan": 4900}
    )
    contact = tenant.contacts["ada"]["_id"]
    flags = ["--account", tenant.account_id, "--contact", contact, "--currency", "EUR"]
    by_flags = await paylink(
        stack,
        "publish",
        *flags,
        "--days-until-due",
        "10",
        "--item",
        f"{tenant.prices['Plan']}:2",
        "--amount-item",
        "Setup: phase 1:1500",
        "--correlation-id",
        "corr-cli",
        "--note-id",
        "note-9",
        "--metadata",
        "deal=D-1",
    )
    assert by_flags.code == 0, by_flags.err
    due = (date.today() + timedelta(days=20)).isoformat()
    body = request(tenant, "ada", due_date=due, days_until_due=None)
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    by_file = await paylink(stack, "publish", "--file", str(path))
    by_stdin = await paylink(stack, "publish", "--file", "-", stdin=json.dumps(request(tenant, "ada")).encode())
    assert (by_file.code, by_file.out.strip()) == (0, body["event_id"])
    assert by_stdin.code == 0
    invalid = await paylink(stack, "publish", *flags, "--days-until-due", "0", "--amount-item", "x:5")
    assert invalid.code == 2 and "invalid_due_date" in invalid.err, "validated before sending; nothing sent"
    ids = {by_flags.out.strip(), body["event_id"], by_stdin.out.strip()}

    async with running_pipeline(stack, relays=0):  # a worker, no relay: the outbox fills

        async def outbox_full() -> bool:
            return await db["outbox"].count_documents({"published": False}) == 3

        await wait_until(outbox_full, 60, "three results in the outbox")
        report = await paylink(stack, "status", "--json")
        assert report.code == 4, report.err  # down: no relay has held the lease
        assert json.loads(report.stdout)["verdict"]["reasons"] == ["no active relay: the lease was never held"]
        status = json.loads(report.stdout)
        table = await paylink(stack, "status", "--window", "2h")

    assert status["outbox"]["backlog"] == 3
    assert status["outbox"]["oldest_age_s"] >= 0
    assert status["sagas"]["by_status"] == {"created": 3}
    assert status["sagas"]["in_flight"] == 0
    kafka = status["kafka"]
    assert kafka["group"] == stack.consumer_group and kafka["members"] == 1
    assert [p["partition"] for p in kafka["partitions"]] == list(range(stack.topic_partitions))
    assert sum(p["end"] for p in kafka["partitions"]) == 3
    assert all(p["lag"] == p["end"] - (p["committed"] or 0) for p in kafka["partitions"])
    assert status["relay"]["owner"] is None and status["unreachable"] == []
    assert table.code == 4 and "backlog 3" in table.out and "created 3" in table.out, table.out

    async with running_pipeline(stack, workers=0), ResultCollector(stack) as collector:  # a relay drains it
        results = await collector.wait_for(ids)
        drained = json.loads((await paylink(stack, "status", "--json")).stdout)
    assert {r["event_type"] for r in results.values()} == {"PaymentLinkCreated"}
    flagged = results[by_flags.out.strip()]
    assert (flagged["correlation_id"], flagged["amount_due"]) == ("corr-cli", 2 * 4900 + 1500)
    assert drained["outbox"]["backlog"] == 0
    assert drained["relay"]["held"] is True


async def test_status_exits_3_when_a_dependency_is_unreachable(stack: Settings) -> None:
    nowhere = stack.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    ran = await paylink(nowhere, "status", "--json")
    assert ran.code == 3
    report = json.loads(ran.stdout)
    assert report["unreachable"] == ["kafka"] and "error" in report["kafka"]
    assert "backlog" in report["outbox"], "the reachable parts are still reported"


async def status_of(stack: Settings) -> tuple[int, dict[str, Any]]:
    ran = await paylink(stack, "status", "--json")
    return ran.code, json.loads(ran.stdout)


async def test_status_verdicts_healthy_no_worker_lapsed_lease_and_old_outbox(
    pipeline_stack: StackFactory, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    stack = await pipeline_stack()
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    seen: dict[str, Any] = {}

    async def verdict_is(code: int) -> bool:
        got, seen["report"] = await status_of(stack)
        return got == code

    async with running_pipeline(stack):  # a worker and a relay: healthy once the worker has joined
        await wait_until(lambda: verdict_is(0), 60, "a healthy verdict")
    assert seen["report"]["verdict"] == {"health": "healthy", "reasons": [], "exit_code": 0}
    assert seen["report"]["kafka"]["members"] == 1 and seen["report"]["kafka"]["member_list"]

    # Stopped: the relay released its lease (lapsed), and no worker is left in the group.
    code, report = await status_of(stack)
    assert (code, report["verdict"]["health"]) == (4, "down"), report["verdict"]
    assert "no worker: the consumer group has no live member" in report["verdict"]["reasons"]
    assert any(
        r.startswith("no active relay: lease of ") and r.endswith(" lapsed") for r in report["verdict"]["reasons"]
    )

    async with running_pipeline(stack, workers=0):  # only a relay: down for want of a worker, lease held

        async def down_for_the_worker_only() -> bool:
            down = await verdict_is(4)
            return down and seen["report"]["verdict"]["reasons"] == ["no worker: the consumer group has no live member"]

        await wait_until(down_for_the_worker_only, 60, "a down verdict for the missing worker alone")

    async with running_pipeline(stack, relays=0):  # a worker, no relay, an entry waiting for 10 minutes
        old = datetime.now(UTC) - timedelta(minutes=10)
        await db["outbox"].insert_one(
            {"_id": "old-entry", "seq": 1, "key": None, "event_type": "PaymentLinkFailed", "payload": "{}",
             "created_at": old, "published": False, "published_at": None}
        )  # fmt: skip
        await wait_until(lambda: verdict_is(4), 60, "a down verdict")
        report = seen["report"]
    assert any(r.startswith("oldest unpublished result is 6") for r in report["verdict"]["reasons"]), report["verdict"]
    table = await paylink(stack, "status")
    assert table.code == 4 and table.out.startswith("VERDICT DOWN\n"), table.out
