"""Shared machinery of the benchmarks: the private stack, fixtures, paylink subprocesses, progress probes.

The benchmarks run on a private stack (its own Kafka, FerretDB and emulators on their own ports and
state directory, ``.local/bench``), so they neither disturb nor are disturbed by the shared dev stack.
paylink runs as real subprocesses (``python -m consumer.cli worker|relay``) configured by ``PAYLINK_*``
variables; their CPU and memory are read with psutil (and ``/proc/<pid>/status`` for the RSS peak).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from consumer.runtime.settings import LOCAL_STRIPE_TEST_KEY, Settings
from tests.e2e.processes import environment

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ROOT / ".local" / "bench"
PORTS = {"kafka": 29092, "mongo": 28017, "stripe": 22211, "shortener": 22280}
KAFKA = f"localhost:{PORTS['kafka']}"
MONGO = f"mongodb://127.0.0.1:{PORTS['mongo']}"
STRIPE = f"http://127.0.0.1:{PORTS['stripe']}"
SHORTENER = f"http://127.0.0.1:{PORTS['shortener']}"
STRIPE_HEADERS = {"Authorization": f"Bearer {LOCAL_STRIPE_TEST_KEY}"}
PARTITIONS = 6


# -- the private stack ---------------------------------------------------------------------------------


def stack(action: str) -> None:
    """``deploy/local/stack.py <action>`` on the private ports and state directory."""
    command = [
        sys.executable, str(ROOT / "deploy" / "local" / "stack.py"), action,
        "--state-dir", str(STATE_DIR),
        "--kafka-port", str(PORTS["kafka"]), "--mongo-port", str(PORTS["mongo"]),
        "--stripe-port", str(PORTS["stripe"]), "--shortener-port", str(PORTS["shortener"]),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL if action == "down" else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- settings, topics, emulators ---------------------------------------------------------------------------


def settings_for(name: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": KAFKA,
        "requests_topic": f"{name}.requested",
        "results_topic": f"{name}.results",
        "consumer_group": f"{name}-worker",
        "mongodb_uri": f"{MONGO}/{name.replace('-', '_').replace('.', '_')}",
        "stripe_api_base": STRIPE,
        "shortener_url": f"{SHORTENER}/shorten",
        "topic_partitions": PARTITIONS,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)


async def create_topics(settings: Settings, extra: Iterable[str] = ()) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [settings.requests_topic, settings.results_topic, *extra]
        await admin.create_topics(
            [NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()


async def reset_emulators() -> None:
    """Clears both emulators: objects, idempotency keys, faults, config, stats."""
    async with httpx.AsyncClient(timeout=30) as http:
        for base in (STRIPE, SHORTENER):
            (await http.post(f"{base}/_emulator/reset")).raise_for_status()


async def configure_stripe(*, latency_ms: int = 0, rate_limit: int | None = None) -> None:
    """The Stripe emulator's latency per API request and requests per second per account."""
    async with httpx.AsyncClient(timeout=30) as http:
        config = {"latency_ms": latency_ms or None, "rate_limit_per_account": rate_limit}
        (await http.post(f"{STRIPE}/_emulator/config", json=config)).raise_for_status()


async def stripe_stats() -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{STRIPE}/_emulator/stats")
        response.raise_for_status()
        return dict(response.json())


def api_requests(stats: dict[str, Any], status: str | None = None, since: dict[str, Any] | None = None) -> int:
    """Stripe API requests counted by the emulator (``status`` e.g. "200", "429"; None = all), minus
    those already counted in ``since``."""

    def count(body: dict[str, Any]) -> int:
        return sum(n for key, n in body["requests"].items() if status is None or key.rsplit(" ", 1)[1] == status)

    return count(stats) - (count(since) if since else 0)


# -- fixtures: tenants, contacts, prices, requests ---------------------------------------------------------


@dataclass
class Tenant:
    account_id: str
    stripe_account: str
    contacts: list[str] = field(default_factory=list)
    prices: list[str] = field(default_factory=list)


async def seed(
    mongo: AsyncMongoClient[dict[str, Any]], settings: Settings, tenants: int, contacts_per_tenant: int
) -> list[Tenant]:
    """Accounts with connected Stripe accounts, contacts with an email (new to Stripe), two prices each."""
    database = mongo.get_database(settings.mongodb_uri.rsplit("/", 1)[1])
    made = [Tenant(f"acc-{uuid.uuid4().hex[:10]}", f"acct_{uuid.uuid4().hex[:16]}") for _ in range(tenants)]
    accounts, contacts = [], []
    for tenant in made:
        accounts.append({"_id": tenant.account_id, "stripe": {"account_id": tenant.stripe_account}})
        for n in range(contacts_per_tenant):
            contact_id = f"con-{uuid.uuid4().hex[:12]}"
            tenant.contacts.append(contact_id)
            contacts.append(
                {
                    "_id": contact_id,
                    "account_id": tenant.account_id,
                    "first_name": "Bench",
                    "last_name": f"Contact {n}",
                    "email": f"{contact_id}@example.com",
                    "address": {"street": "1 Benchmark Road", "city": "Lyon", "country": "FR"},
                }
            )
    await database["accounts"].insert_many(accounts)
    for start in range(0, len(contacts), 1000):
        await database["contacts"].insert_many(contacts[start : start + 1000])
    async with httpx.AsyncClient(base_url=STRIPE, headers=STRIPE_HEADERS, timeout=30) as http:

        async def prices(tenant: Tenant) -> None:
            headers = {"Stripe-Account": tenant.stripe_account}
            for name, amount in (("Licence", 4900), ("Support", 1500)):
                product = (await http.post("/v1/products", data={"name": name}, headers=headers)).json()
                price = await http.post(
                    "/v1/prices",
                    headers=headers,
                    data={"product": product["id"], "unit_amount": str(amount), "currency": "eur"},
                )
                price.raise_for_status()
                tenant.prices.append(price.json()["id"])

        await asyncio.gather(*(prices(tenant) for tenant in made))
    return made


LINES_PER_REQUEST = 3


def request_body(tenant: Tenant, contact_id: str) -> dict[str, Any]:
    """The benchmark's request: three lines (two prices, one amount), as a CRM would send them."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentLinkRequested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": f"bench-{uuid.uuid4().hex[:8]}",
        "account_id": tenant.account_id,
        "contact_id": contact_id,
        "currency": "eur",
        "days_until_due": 14,
        "description": "Benchmark invoice",
        "line_items": [
            {"price_id": tenant.prices[0], "quantity": 2},
            {"price_id": tenant.prices[1], "quantity": 1},
            {"description": "Setup fee", "amount": 5000, "quantity": 1},
        ],
        "metadata": {"source": "bench"},
    }


def requests_for(tenants: list[Tenant], count: int) -> list[dict[str, Any]]:
    """``count`` requests spread round-robin over tenants and their contacts (each contact used once
    while contacts last)."""
    bodies = []
    for n in range(count):
        tenant = tenants[n % len(tenants)]
        contact = tenant.contacts[(n // len(tenants)) % len(tenant.contacts)]
        bodies.append(request_body(tenant, contact))
    return bodies


async def produce(settings: Settings, bodies: Iterable[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for body in bodies:
            await producer.send(settings.requests_topic, json.dumps(body).encode(), key=body["contact_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


# -- paylink as a subprocess -------------------------------------------------------------------------------


class Process:
    """``python -m <module> <args>`` with ``PAYLINK_*`` settings; CPU and RSS peak via psutil and /proc."""

    def __init__(self, args: list[str], settings: Settings, log_path: Path, ready_file: bool = False):
        self.metrics_port = free_port()
        full_env = environment(settings)
        full_env["PAYLINK_METRICS_PORT"] = str(self.metrics_port)
        self.ready_file = log_path.with_suffix(".ready") if ready_file else None
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
            full_env["BENCH_READY_FILE"] = str(self.ready_file)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *args], env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.ps = psutil.Process(self.process.pid)

    @classmethod
    def paylink(cls, command: str, settings: Settings, log_path: Path, counts: Path | None = None) -> Process:
        """``paylink <command>``; with ``counts``, its MongoDB round trips counted there (``counted``)."""
        if counts is not None:
            return cls(["-m", "tests.benchmarks.counted", str(counts), command], settings, log_path)
        return cls(["-m", "consumer.cli", command], settings, log_path)

    @classmethod
    def bare_loop(cls, settings: Settings, log_path: Path) -> Process:
        return cls(["-m", "tests.benchmarks.bare_loop"], settings, log_path, ready_file=True)

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss_peak_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float(self.ps.memory_info().rss) / 2**20

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Until ``/readyz`` answers 200 (paylink) or the ready file exists (the bare loop)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"process exited with {self.process.returncode}; see {self._log.name}")
                if self.ready_file is not None:
                    if self.ready_file.exists():
                        return
                else:
                    try:
                        if (await http.get(f"http://127.0.0.1:{self.metrics_port}/readyz")).status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout_s}s; see {self._log.name}")

    def stop(self, timeout_s: float = 30) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


# -- progress --------------------------------------------------------------------------------------------


class Samples:
    """(time, count) samples of a growing counter, and rates between two of its values."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []

    def add(self, count: float) -> None:
        self.samples.append((time.monotonic(), count))

    def rate_between(self, low: float, high: float) -> float:
        """Counts per second between the moments ``low`` and ``high`` were reached."""
        return (high - low) / (self.moment(high) - self.moment(low))

    def moment(self, count: float) -> float:
        """When ``count`` was reached (linear interpolation between samples)."""
        previous = self.samples[0]
        for sample in self.samples:
            if sample[1] >= count:
                if sample[1] == previous[1]:
                    return sample[0]
                share = (count - previous[1]) / (sample[1] - previous[1])
                return previous[0] + share * (sample[0] - previous[0])
            previous = sample
        raise ValueError(f"{count} never reached")


async def sagas_ended(http: httpx.AsyncClient, port: int) -> float:
    """``paylink_sagas_total`` of a worker (every outcome), from its /metrics."""
    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("paylink_sagas_total{"))


class CommitProbe:
    """Samples the committed offsets of a consumer group: how many requests have a durable outcome."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)

    async def __aenter__(self) -> CommitProbe:
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def committed(self) -> int:
        offsets = await self._admin.list_consumer_group_offsets(self._settings.consumer_group)
        return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == self._settings.requests_topic)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def log_dir() -> Path:
    path = STATE_DIR / "bench-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cpu_count() -> int:
    return os.cpu_count() or 1


class StackCpu:
    """CPU seconds used by the private stack's services (by their pid files) between two snapshots."""

    NAMES = ("kafka", "ferretdb", "stripe-emulator", "shortener-emulator")

    def __init__(self) -> None:
        self._procs: dict[str, psutil.Process] = {}
        for name in self.NAMES:
            try:
                self._procs[name] = psutil.Process(int((STATE_DIR / "run" / f"{name}.pid").read_text()))
            except (OSError, ValueError, psutil.Error):
                continue
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        out = {}
        for name, proc in self._procs.items():
            try:
                times = proc.cpu_times()
                out[name] = float(times.user + times.system)
            except psutil.Error:
                continue
        return out

    def used(self) -> dict[str, float]:
        now = self._now()
        return {name: round(now[name] - self._start.get(name, now[name]), 2) for name in now}
