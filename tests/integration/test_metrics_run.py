"""A whole run of `paylink worker` and `paylink relay` as processes, observed the way operators do:
/metrics scraped over HTTP must count exactly this run's outcomes, /healthz and /readyz answer, and the
captured logs hold one line per outcome and per retry with the request's ids, and no secret. A request
delivered twice is one outcome and one duplicate, not two outcomes. The relay
starts as a standby (another owner holds the lease) so the backlog gauges have something to show."""

from __future__ import annotations

import functools
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, logs_of, wait_until
from tests.integration.cli_helpers import free_port, stripe_fault
from tests.integration.harness import ResultCollector, produce, request, seed_tenant

STRIPE_KEY = f"sk_test_metricsrun{uuid.uuid4().hex}"
SHORTENER_TOKEN = f"shortener-token-{uuid.uuid4().hex}"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def stack(pipeline_stack: StackFactory) -> Settings:
    return await pipeline_stack(
        stripe_api_key=SecretStr(STRIPE_KEY), shortener_token=SecretStr(SHORTENER_TOKEN), retry_attempts=4
    )


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def http_status(port: int, path: str) -> int:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}{path}", timeout=2)).status_code
    except httpx.HTTPError:
        return 0


async def test_metrics_health_and_logs_of_a_whole_run(
    stack: Settings, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> None:
    db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
    tenant = await seed_tenant(
        db, stripe_api_base, {f"c{i}": {"name": f"C {i}", "email": f"c{i}@x.io"} for i in range(4)}
    )
    # Another owner holds the relay lease at first: the relay stands by while the outbox fills.
    await db["leases"].insert_one({"_id": "outbox-relay", "owner": "elsewhere:1:x", "expires_at": _in(3600)})
    worker_port, relay_port = free_port(), free_port()
    worker = PaylinkProcess("worker", stack, tmp_path, "--metrics-port", str(worker_port)).start()
    relay = PaylinkProcess("relay", stack, tmp_path, "--metrics-port", str(relay_port)).start()
    try:
        for port in (worker_port, relay_port):
            await wait_until(functools.partial(_healthy, port), 30, f"/healthz on {port}")
        await wait_until(lambda: _is(http_status(worker_port, "/readyz"), 200), 30, "the worker's partitions")
        # A standby relay (the lease is held elsewhere) is ready too, once it reached MongoDB and Kafka.
        await wait_until(lambda: _is(http_status(relay_port, "/readyz"), 200), 30, "a standby relay's readiness")

        created = [request(tenant, f"c{i}") for i in range(4)]
        missing = request(tenant, "con-missing")
        ids = {body["event_id"] for body in [*created, missing]}
        fault = stripe_fault(
            stripe_api_base, tenant.stripe_account, method="POST", path="/v1/invoices", status=500, count=1
        )
        async with fault, ResultCollector(stack) as collector:
            # created[0] twice: same contact, so the duplicate is handled after the first has finished.
            await produce(stack, [*created, missing, b"\x00 poison", created[0]])

            async def backlog_seen() -> bool:
                now = await scrape(relay_port)
                return (
                    value(now, "paylink_outbox_backlog") == 5
                    and value(now, "paylink_relay_lease_active") == 0
                    and (value(now, "paylink_outbox_oldest_age_seconds") or 0) > 0
                )

            await wait_until(backlog_seen, 30, "the standby relay reporting a backlog of 5")
            await db["leases"].update_one({"_id": "outbox-relay"}, {"$set": {"expires_at": _in(-1)}})
            results = await collector.wait_for(ids)
        assert sum(r["event_type"] == "PaymentLinkCreated" for r in results.values()) == 4

        async def settled() -> bool:  # gauges are sampled every second; counters are final already
            worker_now, relay_now = await scrape(worker_port), await scrape(relay_port)
            lags = [v for (name, _), v in worker_now.items() if name == "paylink_consumer_lag"]
            return (
                len(lags) == stack.topic_partitions
                and not any(lags)
                and value(relay_now, "paylink_outbox_backlog") == 0
            )

        await wait_until(settled, 30, "zero lag on every partition and an empty outbox")
        worker_metrics, relay_metrics = await scrape(worker_port), await scrape(relay_port)
    finally:
        exit_codes = (worker.terminate(), relay.terminate())

    counted = {
        "created": value(worker_metrics, "paylink_sagas_total", outcome="created", reason=""),
        "duplicates": value(worker_metrics, "paylink_duplicates_total", outcome="created"),
        "contact_not_found": value(worker_metrics, "paylink_sagas_total", outcome="failed", reason="contact_not_found"),
        "invalid_event": value(worker_metrics, "paylink_sagas_total", outcome="failed", reason="invalid_event"),
        "dead_letters": value(worker_metrics, "paylink_dead_letters_total", reason="invalid_event"),
        "consumed": value(worker_metrics, "paylink_messages_consumed_total", topic=stack.requests_topic),
        "retries": value(worker_metrics, "paylink_retries_total", reason="stripe_unavailable"),
        "published": value(relay_metrics, "paylink_relay_published_total"),
        "publish_lag_count": value(relay_metrics, "paylink_publish_lag_seconds_count"),
        "lease": value(relay_metrics, "paylink_relay_lease_active"),
        "oldest_age": value(relay_metrics, "paylink_outbox_oldest_age_seconds"),
        "in_flight": value(worker_metrics, "paylink_in_flight_sagas"),
    }
    assert counted == {
        "created": 4,
        "duplicates": 1,
        "contact_not_found": 1,
        "invalid_event": 1,
        "dead_letters": 1,
        "consumed": 7,
        "retries": 1,
        "published": 5,
        "publish_lag_count": 5,
        "lease": 1,
        "oldest_age": 0,
        "in_flight": 0,
    }
    stripe_500s = [
        v
        for (name, labels), v in worker_metrics.items()
        if name == "paylink_stripe_requests_total" and ("status", "500") in labels
    ]
    assert sum(stripe_500s) == 1, "the injected fault, counted once"
    stripe_calls = {dict(labels)["endpoint"] for (name, labels) in worker_metrics if name.startswith("paylink_stripe")}
    assert {"invoices.create", "customers.create"} <= stripe_calls, "Stripe metrics are labelled by endpoint"
    steps = {dict(labels)["step"] for (name, labels) in worker_metrics if name == "paylink_saga_step_seconds_count"}
    # validate is checked with the saga's insert (ADR 0016): no step of its own to time
    assert steps == {"customer", "draft", "items", "finalise", "shorten"}, "saga steps, not endpoints"
    worker_names = {name for name, _ in worker_metrics}
    relay_names = {name for name, _ in relay_metrics}
    assert "paylink_in_flight_sagas" not in relay_names and "paylink_relay_lease_active" not in worker_names
    assert not [n for n in worker_names | relay_names if n.endswith("_created")], "no _created series"
    assert exit_codes == (0, 0), "SIGTERM stops both gracefully"

    output = logs_of(tmp_path)
    assert STRIPE_KEY not in output and SHORTENER_TOKEN not in output
    assert not re.search(r"\b[sr]k_(test|live)_[A-Za-z0-9]", output), "no Stripe key of any kind"
    assert not re.search(r"(?i)bearer\s+(?!\[redacted\])\S", output), "no bearer token"
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert len(lines) == len([line for line in output.splitlines() if line.strip()]), "JSON only"
    outcomes = {
        line["payment_link_id"]: line
        for line in lines
        if line["message"] in ("payment link created", "payment link failed")
    }
    assert outcomes.keys() == ids
    assert sum(line["message"] in ("payment link created", "payment link failed") for line in lines) == len(ids)
    duplicates = [line for line in lines if line["message"] == "duplicate request; result re-reported"]
    assert [line["payment_link_id"] for line in duplicates] == [created[0]["event_id"]]
    by_id = {body["event_id"]: body for body in [*created, missing]}
    for payment_link_id, line in outcomes.items():
        assert (line["correlation_id"], line["account_id"]) == (
            by_id[payment_link_id]["correlation_id"],
            tenant.account_id,
        )
    retries = [line for line in lines if line["message"] == "transient failure; retrying"]
    assert len(retries) == 1 and retries[0]["payment_link_id"] in ids and retries[0]["account_id"] == tenant.account_id
    assert "correlation_id" in retries[0]


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def _is(status: Any, expected: int) -> bool:
    return bool(await status == expected)


async def _healthy(port: int) -> bool:
    return await _is(http_status(port, "/healthz"), 200)
