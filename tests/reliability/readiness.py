"""Waits, with a deadline, until a dependency the suite (re)started is usable, not merely listening.

The suite's own clients failed on the harness, not on paylink: right after a Kafka restart that took
120 s on a loaded machine, ``_produce`` got ``LeaderNotAvailableError`` (issue #17). So before the suite
produces or reads, it waits here for:

- Kafka: metadata names a leader for every partition of the topics it uses;
- MongoDB (FerretDB): a ping answers and a write is acknowledged;
- an emulator: its health endpoint answers 200.

Each wait polls a probe until it says yes or the deadline passes; on timeout it raises ``NotReady``
with the probe's last answer, so a report says what was still missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

Probe = Callable[[], Awaitable[str | None]]  # None: ready; else what is still missing


class NotReady(TimeoutError):
    pass


async def wait_until(probe: Probe, what: str, timeout_s: float, interval_s: float = 0.25) -> float:
    """Polls ``probe`` until it answers None; returns the seconds waited. A probe that raises counts
    as not ready (the service is restarting), its error as the detail."""
    started = time.monotonic()
    deadline = started + timeout_s
    detail = "never probed"
    while True:
        try:
            missing = await asyncio.wait_for(probe(), max(0.1, deadline - time.monotonic()))
        except Exception as error:  # a restarting service fails in any of its clients' ways
            missing = f"{type(error).__name__}: {error}"[:200]
        if missing is None:
            return time.monotonic() - started
        detail = missing
        if time.monotonic() + interval_s > deadline:
            raise NotReady(f"{what} not ready after {timeout_s:.0f}s: {detail}")
        await asyncio.sleep(interval_s)


def missing_leaders(described: Iterable[dict[str, Any]], topics: Iterable[str]) -> str | None:
    """What ``describe_topics`` says is not ready yet: a topic in error or a partition without a leader."""
    seen = {str(t.get("topic")): t for t in described}
    for topic in topics:
        meta = seen.get(topic)
        if meta is None or meta.get("error_code", 0) != 0:
            return f"topic {topic}: {'absent' if meta is None else 'error ' + str(meta.get('error_code'))}"
        partitions = meta.get("partitions") or []
        if not partitions:
            return f"topic {topic}: no partitions yet"
        for partition in partitions:
            if partition.get("error_code", 0) != 0 or int(partition.get("leader", -1)) < 0:
                return f"topic {topic} partition {partition.get('partition')}: no leader"
    return None


def kafka_probe(bootstrap: str, topics: list[str]) -> Probe:
    async def probe() -> str | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            # Only topics that exist are described: a metadata request naming a missing topic would have
            # the broker auto-create it (with the broker's defaults, not the suite's).
            existing = set(await admin.list_topics())
            absent = [t for t in topics if t not in existing]
            if absent:
                return f"topic {absent[0]}: absent"
            return missing_leaders(await admin.describe_topics(topics), topics) if topics else None
        finally:
            await admin.close()

    return probe


def mongo_probe(uri: str, database: str = "rel_readiness") -> Probe:
    async def probe() -> str | None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=3000)
        try:
            await client.admin.command("ping")
            written = await client[database]["probe"].replace_one({"_id": "probe"}, {"at": time.time()}, upsert=True)
            return None if written.acknowledged else "write not acknowledged"
        finally:
            await client.close()

    return probe


def http_probe(url: str) -> Probe:
    async def probe() -> str | None:
        async with httpx.AsyncClient(timeout=3) as http:
            response = await http.get(url)
        return None if response.status_code == 200 else f"{url} answered {response.status_code}"

    return probe


async def wait_kafka(bootstrap: str, topics: list[str], timeout_s: float = 180.0) -> float:
    return await wait_until(kafka_probe(bootstrap, topics), f"Kafka {bootstrap}", timeout_s)


async def wait_mongo(uri: str, timeout_s: float = 180.0) -> float:
    return await wait_until(mongo_probe(uri), f"MongoDB {uri}", timeout_s)


async def wait_http(url: str, timeout_s: float = 60.0) -> float:
    return await wait_until(http_probe(url), url, timeout_s)


async def wait_service(service: str, services: Any, topics: list[str], timeout_s: float = 180.0) -> float:
    """Waits for the stack service ``service`` (a name of deploy/local/stack.py) after its restart."""
    if service == "kafka":
        return await wait_kafka(services.kafka, topics, timeout_s)
    if service == "ferretdb":
        return await wait_mongo(services.mongodb_uri, timeout_s)
    base = {"stripe-emulator": services.stripe_base, "shortener-emulator": services.shortener_base}.get(service)
    if base is None:
        return 0.0
    return await wait_http(f"{base}/_emulator/health", timeout_s)
