"""`make demo`: the whole pipeline on the local stack, as a new user would first see it.

Seeds a fresh CRM account connected to a Stripe (emulator) account, with contacts and prices; starts
`paylink worker` and `paylink relay` as real processes; sends a handful of requests covering the
main outcomes with ``paylink.client`` (the integrators' way: the one with a past due date is refused
before it is sent); reads every result with the same client; prints a table. Then `paylink webhooks`
follows two links: one is paid, one voided (``demo_lifecycle``). Stops what it started.
Uses the default settings (topics, database), so what it leaves behind is what `paylink status` shows.

Run from the repository root: `python -m deploy.local.demo` (what `make demo` does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from consumer.cli.topics import create_topics
from consumer.runtime.bootstrap import database_name
from consumer.runtime.settings import Settings
from deploy.local.demo_lifecycle import second_act
from paylink.client import PermanentError, iter_results, send_request

ROOT = Path(__file__).resolve().parents[2]

TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def seed(settings: Settings) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    tenant: dict[str, Any] = {"account_id": f"demo-account-{suffix}", "stripe": f"acct_demo{suffix}"}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    crm = client[settings.crm_database or database_name(settings.mongodb_uri)]
    await crm["accounts"].insert_one({"_id": tenant["account_id"], "stripe": {"account_id": tenant["stripe"]}})
    contacts: dict[str, dict[str, Any]] = {
        "ada": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+442071234567",
            "address": {"street": "12 St James's Sq", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"},
        },
        "grace": {"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"},
        "anon": {"name": "No Email Or Phone"},
    }
    tenant["contacts"] = {}
    for name, fields in contacts.items():
        contact_id = f"demo-{name}-{suffix}"
        await crm["contacts"].insert_one({"_id": contact_id, "account_id": tenant["account_id"], **fields})
        tenant["contacts"][name] = contact_id
    await client.close()
    headers = {
        "Authorization": f"Bearer {settings.stripe_api_key.get_secret_value()}",
        "Stripe-Account": tenant["stripe"],
    }
    tenant["prices"] = {}
    async with httpx.AsyncClient(base_url=settings.stripe_api_base, headers=headers) as stripe:
        for name, amount in (("Annual plan", 49_000), ("Onboarding", 15_000)):
            product = (await stripe.post("/v1/products", data={"name": name})).json()
            price = await stripe.post(
                "/v1/prices", data={"product": product["id"], "unit_amount": amount, "currency": "eur"}
            )
            price.raise_for_status()
            tenant["prices"][name] = price.json()["id"]
    return tenant


def requests_for(tenant: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    contacts, prices = tenant["contacts"], tenant["prices"]

    def request(contact_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "event_type": "PaymentLinkRequested",
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "correlation_id": f"demo-{uuid.uuid4().hex[:6]}",
            "account_id": tenant["account_id"],
            "contact_id": contact_id,
            "currency": "eur",
            "days_until_due": 14,
            **fields,
        }

    return [
        (
            "saved prices",
            request(
                contacts["ada"],
                line_items=[
                    {"price_id": prices["Annual plan"], "quantity": 1},
                    {"price_id": prices["Onboarding"], "quantity": 2},
                ],
            ),
        ),
        (
            "custom amounts",
            request(
                contacts["grace"],
                note_id="note-42",
                line_items=[
                    {"description": "Workshop day", "amount": 120_000, "quantity": 2},
                    {"description": "Travel", "amount": 18_550},
                ],
            ),
        ),
        ("no email or phone", request(contacts["anon"], line_items=[{"description": "Consulting", "amount": 9_900}])),
        (
            "past due date",
            request(
                contacts["ada"],
                days_until_due=None,
                due_date=(date.today() - timedelta(days=3)).isoformat(),
                line_items=[{"description": "Late fee", "amount": 2_500}],
            ),
        ),
        ("unknown contact", request("demo-nobody", line_items=[{"description": "Consulting", "amount": 9_900}])),
        ("unknown price", request(contacts["grace"], line_items=[{"price_id": "price_doesnotexist", "quantity": 1}])),
    ]


def start(command: str, settings: Settings, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PAYLINK_LOG_FORMAT="json")
    log = (log_dir / f"demo-{command}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", command, "--metrics-port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    return process, port


def wait_ready(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited early; see .local/log/demo-{name}.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{name} did not become ready within {TIMEOUT_S}s")


async def publish_and_collect(
    settings: Settings, requests: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[str, dict[str, Any]], dict[str, PermanentError]]:
    """Sends the requests with paylink's client, as an integrator would, and reads their results with it;
    a request the client refuses at the door (the worker's own checks) is never sent."""
    results: dict[str, dict[str, Any]] = {}
    ready, arrived = asyncio.Event(), asyncio.Event()

    async def collect() -> None:
        async for message in iter_results(settings.kafka_bootstrap_servers, settings.results_topic, on_ready=ready.set):
            results[str(message.document.get("payment_link_id"))] = message.document
            arrived.set()

    reader = asyncio.create_task(collect())
    refused: dict[str, PermanentError] = {}
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await ready.wait()  # "the end" is pinned: every result of what is sent now will be seen
            for _, body in requests:
                try:
                    await send_request(settings.kafka_bootstrap_servers, settings.requests_topic, body)
                except PermanentError as error:
                    refused[body["event_id"]] = error
            expected = {body["event_id"] for _, body in requests} - refused.keys()
            while not expected <= results.keys():
                await arrived.wait()
                arrived.clear()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return results, refused


def table(
    requests: list[tuple[str, dict[str, Any]]], results: dict[str, dict[str, Any]], refused: dict[str, PermanentError]
) -> str:
    rows = [("request", "outcome", "amount", "URL or reason")]
    for label, body in requests:
        if body["event_id"] in refused:
            error = refused[body["event_id"]]
            rows.append((label, "not sent", "", f"{error.reason}: {error.message[:90]}"))
            continue
        result = results[body["event_id"]]
        if result["event_type"] == "PaymentLinkCreated":
            amount = f"{result['amount_due'] / 100:,.2f} {result['currency'].upper()}"
            rows.append((label, "created", amount, result["url"]))
        else:
            rows.append((label, "failed", "", f"{result['reason']}: {result['message'][:90]}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 13)
    return "\n".join(lines)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--use-running",
        action="store_true",
        help="a worker and a relay already run on these settings (deploy/compose.yaml): start none",
    )
    parser.add_argument(
        "--webhooks-host",
        default="127.0.0.1",
        help="the name the Stripe emulator reaches this process's `paylink webhooks` by (default 127.0.0.1)",
    )
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".local" / "log", help="where the processes log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    settings = Settings()
    log_dir = args.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(create_topics(settings))
    tenant = asyncio.run(seed(settings))
    print(f"seeded account {tenant['account_id']} → Stripe {tenant['stripe']} with 3 contacts and 2 prices")
    processes = []
    try:
        for command in () if args.use_running else ("worker", "relay"):
            process, port = start(command, settings, log_dir)
            processes.append(process)
            wait_ready(port, process, command)
        print("worker and relay are running; sending 6 requests with paylink.client …")
        requests = requests_for(tenant)
        started = time.monotonic()
        results, refused = asyncio.run(publish_and_collect(settings, requests))
        sent = len(requests) - len(refused)
        print(
            f"{len(refused)} refused before sending; all {sent} results arrived in {time.monotonic() - started:.2f}s\n"
        )
        print(table(requests, results, refused))
        created = {
            label: results[body["event_id"]]
            for label, body in requests
            if body["event_id"] in results and results[body["event_id"]]["event_type"] == "PaymentLinkCreated"
        }
        print("\npaylink webhooks is running; a customer pays the first link, the second is voided in Stripe …")
        print(asyncio.run(second_act(settings, created, free_port(), log_dir, args.webhooks_host)))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    stopped = "webhooks" if args.use_running else "worker, relay and webhooks"
    print(f"\n{stopped} stopped; logs in {log_dir} (demo-*.log)")


if __name__ == "__main__":
    main()
