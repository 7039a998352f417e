"""The CPU baseline of ``cpu_overhead``: a bare loop doing the worker's I/O per request, nothing else.

    python -m tests.benchmarks.bare_loop   (PAYLINK_* settings, like the worker)

Per request message it does the same Kafka, MongoDB and HTTP operations as a paylink saga that creates
a customer (counted in the worker with a command listener; see OPERATIONS), with the same documents'
sizes and the same HTTP bodies, concurrently up to ``max_in_flight`` and committing offsets as the
worker does, but with no validation models, no saga records, no Stripe SDK objects, no retries, no
logging or metrics: what the I/O costs by itself, in the same client libraries (aiokafka, pymongo,
aiohttp for Stripe, httpx for the shortener).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient, ReturnDocument

from consumer.runtime.bootstrap import database_name
from consumer.runtime.settings import Settings

# MongoDB operations per saga of the benchmark's request (a new customer), as the worker does them
# (save points, ADR 0016; counted in the worker by ``store_ops_per_saga``).
OPERATIONS = {
    "insert saga (with the due date)": 1,
    "update saga (customer, draft, items, result)": 4,
    "find contact (the account is kept in memory, ADR 0017)": 1,
    "link customer (one conditional update)": 1,
    "outbox (increment the seq counter, insert entry)": 2,
}
STRIPE_CALLS = ("customers.search", "customers.create", "invoices.create", "invoices.add_lines", "invoices.finalize")


class BareLoop:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
        self.db = self.mongo[database_name(settings.mongodb_uri)]
        self.http = httpx.AsyncClient()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=settings.max_in_flight * 2))
        self.auth = {"Authorization": f"Bearer {settings.stripe_api_key.get_secret_value()}"}
        self.done: dict[TopicPartition, set[int]] = {}
        self.accounts: dict[str, str] = {}  # connected accounts, kept like the worker keeps them

    async def stripe(
        self, method: str, path: str, account: str, data: dict[str, str] | None = None, **params: str
    ) -> Any:
        headers = {**self.auth, "Stripe-Account": account, "Stripe-Version": "2025-09-30.clover"}
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        url = self.settings.stripe_api_base + path
        async with self.session.request(method, url, headers=headers, data=data, params=params) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    async def handle(self, raw: bytes) -> None:
        request = json.loads(raw)
        db, pid = self.db, request["event_id"]
        doc: dict[str, Any] = {"_id": pid, "request": raw.decode(), "status": "running", "version": 0,
                               "due_date": "2030-01-01"}  # fmt: skip
        await db["sagas"].insert_one(doc)
        acct = self.accounts.get(request["account_id"])
        if acct is None:
            account = await db["accounts"].find_one({"_id": request["account_id"]})
            assert account is not None
            acct = self.accounts[request["account_id"]] = account["stripe"]["account_id"]
        contact = await db["contacts"].find_one({"_id": request["contact_id"]})
        assert contact is not None
        version = 0

        async def save(**fields: Any) -> None:
            nonlocal version
            await db["sagas"].update_one({"_id": pid, "version": version}, {"$set": {**fields, "version": version + 1}})
            version += 1

        await self.stripe("GET", "/v1/customers/search", acct, query=f'email:"{contact["email"]}"', limit="10")
        customer = await self.stripe("POST", "/v1/customers", acct, {"email": contact["email"], "name": "Bench"})
        field = f"stripe_customers.{acct}"
        await db["contacts"].update_one({"_id": contact["_id"], field: {"$exists": False}}, {"$set": {field: "x"}})
        await save(customer_id=customer["id"], stripe_account=acct)
        draft = await self.stripe(
            "POST",
            "/v1/invoices",
            acct,
            {"customer": customer["id"], "currency": request["currency"], "collection_method": "send_invoice",
             "days_until_due": "14",
             "auto_advance": "false", "pending_invoice_items_behavior": "exclude", "description": "Bench"},
        )  # fmt: skip
        await save(invoice_id=draft["id"])
        lines: dict[str, str] = {}
        for n, line in enumerate(request["line_items"]):
            if "price_id" in line:
                lines[f"lines[{n}][pricing][price]"] = line["price_id"]
                lines[f"lines[{n}][quantity]"] = str(line["quantity"])
            else:
                lines[f"lines[{n}][amount]"] = str(line["amount"])
                lines[f"lines[{n}][description]"] = line["description"]
        await self.stripe("POST", f"/v1/invoices/{draft['id']}/add_lines", acct, lines)
        await save(items_added=len(request["line_items"]))
        final = await self.stripe("POST", f"/v1/invoices/{draft['id']}/finalize", acct, {"auto_advance": "false"})
        short = await self.http.post(
            self.settings.shortener_url,
            json={"url": final["hosted_invoice_url"]},
            headers={"Authorization": f"Bearer {self.settings.shortener_token.get_secret_value()}"},
        )
        event = json.dumps({"event_id": str(uuid.uuid4()), "payment_link_id": pid, "url": final["hosted_invoice_url"]})
        await save(invoice=final["hosted_invoice_url"], short_url=short.json().get("short_url"), status="created",
                   result=event)  # fmt: skip
        # The outbox takes its seq the same way: one counter increment (adapters/mongo/outbox.py).
        counter = await db["outbox_counter"].find_one_and_update(
            {"_id": "seq"}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert counter is not None  # an upsert returning the document after the update
        seq = counter["n"]
        await db["outbox"].insert_one(
            {"_id": str(uuid.uuid4()), "seq": seq, "key": request["contact_id"], "payload": event,
             "created_at": datetime.now(UTC), "published": False, "published_at": None}
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.requests_topic,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        slots = asyncio.Semaphore(self.settings.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        last_commit = 0.0
        next_offset: dict[TopicPartition, int] = {}

        async def one(tp: TopicPartition, record: Any) -> None:
            try:
                await self.handle(record.value)
            except Exception as error:  # a baseline must not stall: count it done, say so
                print(f"bare loop: request failed: {error!r}", flush=True)
            finally:
                self.done.setdefault(tp, set()).add(record.offset)
                slots.release()

        ready_file = os.environ.get("BENCH_READY_FILE")
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=self.settings.max_in_flight)
                if ready_file and consumer.assignment():
                    _signal_ready(ready_file)
                    ready_file = None
                for tp, records in batch.items():
                    next_offset.setdefault(tp, records[0].offset)
                    for record in records:
                        await slots.acquire()
                        task = asyncio.create_task(one(tp, record))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                if time.monotonic() - last_commit > 0.2:
                    last_commit = time.monotonic()
                    offsets = {}
                    for tp, done in self.done.items():
                        while next_offset[tp] in done:
                            done.discard(next_offset[tp])
                            next_offset[tp] += 1
                        offsets[tp] = next_offset[tp]
                    if offsets:
                        await consumer.commit(offsets)
        finally:
            await consumer.stop()
            await self.session.close()
            await self.http.aclose()
            await self.mongo.close()


def _signal_ready(path: str) -> None:
    with open(path, "w") as ready:
        ready.write("ready\n")


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await BareLoop(Settings()).run(stop)


if __name__ == "__main__":
    asyncio.run(main())
