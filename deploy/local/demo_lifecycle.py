"""The demo's second act: what happens to links after they exist, told by lifecycle events.

Registers a Connect webhook endpoint on the Stripe emulator (as an operator would on Stripe), starts
`paylink webhooks` with its signing secret, then pays one link (a customer on the hosted page) and
voids another (as in Stripe's dashboard), and waits for `PaymentLinkPaid` and `PaymentLinkVoided` on
the results topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60
EVENTS = ["invoice.paid", "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible"]


@contextlib.asynccontextmanager
async def endpoint(stripe: httpx.AsyncClient, port: int, host: str) -> AsyncIterator[str]:
    """A Connect webhook endpoint for `paylink webhooks` on ``host:port``; yields its signing secret."""
    form = {"url": f"http://{host}:{port}/stripe/webhooks", "connect": "true", "description": "paylink demo"}
    form.update({f"enabled_events[{i}]": kind for i, kind in enumerate(EVENTS)})
    created = (await stripe.post("/v1/webhook_endpoints", data=form)).raise_for_status().json()
    try:
        yield str(created["secret"])
    finally:
        await stripe.delete(f"/v1/webhook_endpoints/{created['id']}")


@contextlib.contextmanager
def webhooks_process(port: int, secret: str, log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PAYLINK_LOG_FORMAT="json", PAYLINK_STRIPE_WEBHOOK_SECRETS=secret)
    with (log_dir / "demo-webhooks.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", "webhooks", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def ready(port: int, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(TIMEOUT_S), httpx.AsyncClient() as http:
        while True:
            if process.poll() is not None:
                raise SystemExit("paylink webhooks exited early; see .local/log/demo-webhooks.log")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def follow(
    settings: Settings, links: dict[str, dict[str, Any]], stripe: httpx.AsyncClient
) -> list[dict[str, Any]]:
    """Pays the first created link on its hosted page, voids the second; returns their lifecycle events."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.results_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)  # pin "the end" before anything happens
        (paid_label, paid), (void_label, voided) = list(links.items())[:2]
        account = {"Stripe-Account": paid["stripe_account"]}
        body = {"account": paid["stripe_account"], "outcome": "succeeded"}
        (await stripe.post(f"/_emulator/invoices/{paid['invoice_id']}/hosted_payment", json=body)).raise_for_status()
        (await stripe.post(f"/v1/invoices/{voided['invoice_id']}/void", headers=account)).raise_for_status()
        wanted = {paid["payment_link_id"]: paid_label, voided["payment_link_id"]: void_label}
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT_S):
            while {e["payment_link_id"] for e in events} != wanted.keys():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for event in (json.loads(record.value) for record in records):
                        # Lifecycle events only: a result can be delivered again (at least once).
                        if event["payment_link_id"] in wanted and "source" in event:
                            events.append(event)
        return [{**event, "label": wanted[event["payment_link_id"]]} for event in events]
    finally:
        await consumer.stop()


def table(events: list[dict[str, Any]]) -> str:
    rows = [("request", "lifecycle event", "source", "detail")]
    for event in events:
        if event["event_type"] == "PaymentLinkPaid":
            detail = f"{event['amount_paid'] / 100:,.2f} {event['currency'].upper()} paid at {event['paid_at']}"
        else:
            detail = f"voided at {event.get('voided_at')}"
        rows.append((event["label"], event["event_type"], event["source"], detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


async def second_act(
    settings: Settings, created: dict[str, dict[str, Any]], port: int, log_dir: Path, host: str = "127.0.0.1"
) -> str:
    """``host``: the name the Stripe emulator reaches this machine by (``demo`` in deploy/compose.yaml)."""
    headers = {"Authorization": f"Bearer {settings.stripe_api_key.get_secret_value()}"}
    async with (
        httpx.AsyncClient(base_url=settings.stripe_api_base, headers=headers) as stripe,
        endpoint(stripe, port, host) as secret,
    ):
        with webhooks_process(port, secret, log_dir) as process:
            await ready(port, process)
            return table(await follow(settings, created, stripe))
