"""Runs one reliability scenario end to end and checks the invariants (``tests.reliability.invariants``).

A scenario gets its own topics (created with room for 1 MiB messages), consumer group, database and
Stripe connected accounts, so scenarios never see each other's data. Its life:

1. seed the world; put a probe on the Stripe accounts no request may reach;
2. start the paylink processes (N ``paylink worker``, two ``paylink relay`` and, for a scenario with
   ``webhooks``, one ``paylink webhooks`` behind a Connect endpoint registered on the emulator) as
   subprocesses, their output in the run's log directory;
3. produce the messages over ``produce_s`` seconds while the scenario's chaos runs (kills, restarts,
   fault storms); a watchdog notes any process that exits unasked (and restarts it);
4. settle: wait until the group's committed offsets reach the end of every partition and the outbox has
   nothing left to publish; then the scenario's ``finish`` (``paylink reconcile``, say), and settle again;
5. replay: ``paylink replay --all`` for what ended retryable (see the invariants' docstring), settle again;
   then ``paylink replay --event-id …`` for the cancels that gave up or were rejected retryably (a
   replayed request may have created their link since), settle again;
6. observe everything and check; stop the processes gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from consumer.runtime.settings import Settings
from domain.lifecycle_events import LIFECYCLE_EVENT_TYPES
from tests.e2e.processes import PaylinkProcess, logs_of
from tests.integration.harness import STRIPE_HEADERS, settings_for, stripe_objects
from tests.reliability.invariants import INVARIANTS, PLACE, Check, Observation, check_all
from tests.reliability.process import WrappedProcess
from tests.reliability.readiness import NotReady, wait_kafka, wait_mongo, wait_service, wait_until
from tests.reliability.routes import Routes
from tests.reliability.stack import PrivateStack, Services
from tests.reliability.toxiproxy import Toxiproxy
from tests.reliability.workload import Mix, Sent, World, cancel_body, cancel_sent, mix_cancels, seed_world

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
READY_TIMEOUT_S = 240.0  # a Kafka restart took 120.8 s on a loaded machine (issue #17): twice that
Document = dict[str, Any]
Chaos = Callable[["ScenarioRun"], Awaitable[None]]
Hostile = Callable[[World, random.Random, int], list[Sent]]
Goal = Callable[["ScenarioRun", Observation], list[str]]
LIFECYCLE_NAMES = frozenset(kind.__name__ for kind in LIFECYCLE_EVENT_TYPES)
CANCEL_REJECTED = "PaymentLinkCancelRejected"
# What a Connect endpoint of paylink listens to (docs/operations.md, "Register the webhook endpoint").
WEBHOOK_EVENT_TYPES = ["invoice.paid", "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible"]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    requests: int  # valid-shaped requests (the mix); hostile messages come on top
    produce_s: float  # the requests are spread over this long, so the chaos lands mid-stream
    chaos: Chaos | None = None
    hostile: Hostile | None = None
    hostile_count: int = 0
    hostile_after: float = 0.0  # the hostile messages go after this share of the valid ones (a clean start)
    workers: int = 1
    relays: int = 2
    settings: dict[str, Any] = field(default_factory=dict)
    private: bool = False  # restarts services or changes emulator-wide config: only on a private stack
    settle_timeout_s: float = 180.0
    weights: dict[str, int] = field(default_factory=dict)  # overrides of the request mix (workload.Mix)
    stripe_config: dict[str, Any] = field(default_factory=dict)  # emulator-wide config for the run (private only)
    replay_settings: dict[str, Any] = field(default_factory=dict)  # what the operator fixed before replaying
    goal: Goal | None = None  # what the chaos must have achieved (else the run proves nothing)
    webhooks: bool = False  # run `paylink webhooks` behind a Connect endpoint registered on the emulator
    finish: Chaos | None = None  # after the first settle (e.g. `paylink reconcile`); then settled again
    cancels: int = 0  # PaymentLinkCancelRequested mixed into the stream (workload.mix_cancels)
    paid_cancels: int = 0  # links paid on the hosted page mid-run, then cancelled (→ already_paid)
    proxied: bool = False  # paylink's processes reach every dependency through Toxiproxy (routes.Routes)
    kafka_proxied_for: frozenset[str] = frozenset({"worker", "relay"})  # who reaches Kafka via its proxy
    wrap: dict[str, list[str]] = field(default_factory=dict)  # role → command prefix (e.g. faketime), private only
    metrics_port: int | None = None  # the first process's /metrics port, the next one's +1, … (the soak's samples)


@dataclass
class ScenarioResult:
    scenario: Scenario
    sent: int
    checks: dict[str, Check]
    chaos: Counter[str]
    faults_fired: int
    duplicates: int
    replayed: int
    outcomes: Counter[str]
    seconds: float
    notes: list[str]

    @property
    def violations(self) -> int:
        return sum(check.violations for check in self.checks.values())


class ScenarioRun:
    """One scenario's run: the handle its chaos function gets."""

    def __init__(self, scenario: Scenario, services: Services, stack: PrivateStack | None, log_root: Path, seed: int):
        self.scenario = scenario
        self.services = services
        self.stack = stack
        self.rng = random.Random(seed)
        self.name = f"rel-{scenario.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
        self.log_dir = log_root / scenario.name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        overrides: dict[str, Any] = {"max_in_flight": 32, "topic_partitions": 3, **scenario.settings}
        self.settings: Settings = settings_for(
            self.name,
            kafka=services.kafka,
            mongodb_uri=services.mongodb_uri,
            stripe_base=services.stripe_base,
            shortener_base=services.shortener_base,
            **overrides,
        )
        self.chaos: Counter[str] = Counter()
        self.notes: list[str] = []
        self.workers: list[PaylinkProcess] = []
        self.relays: list[PaylinkProcess] = []
        self.webhooks: list[PaylinkProcess] = []
        self.webhook_endpoint: str | None = None
        self.reset_stripe_after = False  # the scenario moved the emulator's clock: reset it once observed
        self.state: dict[str, Any] = {}  # what a scenario's chaos keeps for its finish and goal
        self._stopped: set[int] = set()  # id() of processes stopped on purpose
        self._unexpected: list[str] = []
        self._fault_ids: list[str] = []
        self._probe_ids: dict[str, str] = {}
        self._started = 0.0
        self.sent: list[Sent] = []
        self.world: World
        self.mongo: AsyncMongoClient[Document] = AsyncMongoClient(
            services.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=60_000
        )
        self.db: AsyncDatabase[Document] = self.mongo[self.settings.mongodb_uri.rsplit("/", 1)[1]]
        self.stripe = httpx.AsyncClient(base_url=services.stripe_base, timeout=30)
        self.shortener = httpx.AsyncClient(base_url=services.shortener_base, timeout=30)
        self.routes: Routes | None = None
        self.toxi: Toxiproxy | None = None
        if scenario.proxied:
            assert stack is not None, "proxied scenarios need the private stack (its Kafka's proxied listener)"
            self.routes = Routes.of(stack, scenario.relays, scenario.kafka_proxied_for)
            self.toxi = Toxiproxy(stack.toxiproxy_port)

    @property
    def metrics_port(self) -> int | None:
        """The first process's ``/metrics`` port: the scenario's, moved with the private stack's ports."""
        if self.scenario.metrics_port is None:
            return None
        return self.scenario.metrics_port + (self.stack.metrics_shift if self.stack is not None else 0)

    def role_settings(self, role: str) -> Settings:
        """What a paylink process of ``role`` gets: the direct settings, or its proxies' in a proxied run."""
        return self.settings if self.routes is None else self.routes.settings(self.settings, role)

    def _process(self, command: str, role: str) -> PaylinkProcess:
        prefix = self.scenario.wrap.get(role) or self.scenario.wrap.get(command)
        settings = self.role_settings(role)
        if self.metrics_port is not None:
            port = self.metrics_port + len(self.workers) + len(self.relays)
            settings = settings.model_copy(update={"metrics_port": port})
        if prefix:
            return WrappedProcess(prefix, command, settings, self.log_dir)
        return PaylinkProcess(command, settings, self.log_dir)

    # --- processes -------------------------------------------------------------------------------

    def start_worker(self) -> PaylinkProcess:
        worker = self._process("worker", "worker").start()
        self.workers.append(worker)
        return worker

    def start_relay(self) -> PaylinkProcess:
        relay = self._process("relay", f"relay-{len(self.relays)}").start()
        self.relays.append(relay)
        return relay

    def start_webhooks(self) -> PaylinkProcess:
        hooks = PaylinkProcess("webhooks", self.settings, self.log_dir).start()
        self.webhooks.append(hooks)
        return hooks

    async def _register_webhooks(self) -> None:
        """A Connect endpoint on the emulator pointing at this run's ``paylink webhooks``; its secret goes
        into the settings every process gets."""
        port = self.services.webhooks_port
        # A proxied run's deliveries go through Toxiproxy; its readiness probe still asks paylink directly.
        address = f"127.0.0.1:{port}" if self.routes is None else self.routes.webhooks.address
        form = {"url": f"http://{address}/stripe/webhooks", "connect": "true", "description": self.name}
        form.update({f"enabled_events[{i}]": kind for i, kind in enumerate(WEBHOOK_EVENT_TYPES)})
        response = await self.stripe.post("/v1/webhook_endpoints", data=form, headers=STRIPE_HEADERS)
        response.raise_for_status()
        created = response.json()
        self.webhook_endpoint = str(created["id"])
        self.settings = self.settings.model_copy(
            update={
                "webhooks_host": "127.0.0.1",
                "webhooks_port": port,
                "stripe_webhook_secrets": SecretStr(str(created["secret"])),
            }
        )

    async def webhooks_ready(self, timeout_s: float = 30.0) -> bool:
        """Waits until ``paylink webhooks`` answers ``/readyz``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{self.services.webhooks_port}/readyz"
                    if (await http.get(url)).status_code == 200:
                        return True
                await asyncio.sleep(0.1)
        return False

    async def run_command(self, command: str, *args: str, timeout_s: float = 120) -> tuple[int | None, str]:
        """Runs ``paylink <command> <args>`` to its end; its exit code and output."""
        process = PaylinkProcess(command, self.settings, self.log_dir, *args).start()
        assert process.process is not None
        code = await asyncio.to_thread(process.process.wait, timeout_s)
        output = "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob(f"{command}-{id(process)}-*.log"))
        return code, output

    async def _processes_ready(self) -> None:
        """The production window (and its chaos) starts once paylink is up: a relay holds the lease and
        every worker logged its start. On a loaded machine a process took 16 s to import; a window of 8 s
        then ended before any relay could be killed (the suite failing on itself, not on paylink)."""

        async def probe() -> str | None:
            if self.relays and await self.active_relay() is None:
                return "no relay holds the lease yet"
            for worker in self.workers:
                if not self.has_started(worker):
                    return "a worker has not started yet"
            return None

        waited = await wait_until(probe, "paylink's processes", READY_TIMEOUT_S)
        if waited > 5:
            self.notes.append(f"paylink's processes were up after {waited:.0f}s")

    def has_started(self, process: PaylinkProcess) -> bool:
        """Whether ``process`` (its current run) logged that it started: its signal handlers are in place."""
        log = self.log_dir / f"{process.command}-{id(process)}-{process.starts}.log"
        with contextlib.suppress(OSError):
            return f'"{process.command} started"' in log.read_text(errors="replace")
        return False

    async def until_started(self, process: PaylinkProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
        async def probe() -> str | None:
            return None if self.has_started(process) else f"{process.command} not started yet"

        await wait_until(probe, f"paylink {process.command}", timeout_s)

    async def running_sagas(self) -> int:
        try:
            return await self.db["sagas"].count_documents({"status": {"$in": ["running", "compensating"]}})
        except PyMongoError:
            return -1

    def kill(self, process: PaylinkProcess) -> None:
        """SIGKILL: no drain, no commit, no lease release."""
        self._stopped.add(id(process))
        process.kill()
        self.chaos[f"{process.command} SIGKILL"] += 1

    def restart(self, process: PaylinkProcess) -> None:
        self._stopped.discard(id(process))
        process.start()

    async def freeze(self, process: PaylinkProcess, seconds: float) -> None:
        """SIGSTOP, then SIGCONT after ``seconds``: a process that stalls (a long GC pause, a frozen VM)
        past its session and comes back as a zombie, still holding in-flight work."""
        assert process.process is not None
        process.process.send_signal(signal.SIGSTOP)
        self.chaos[f"{process.command} SIGSTOP"] += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            process.process.send_signal(signal.SIGCONT)

    async def terminate(self, process: PaylinkProcess, *, chaos: bool = True) -> None:
        """SIGTERM: a graceful stop (drain, commit, leave the group / release the lease)."""
        self._stopped.add(id(process))
        code = await asyncio.to_thread(process.terminate, 40)
        if code != 0:
            self._unexpected.append(f"{process.command} exited {code} on SIGTERM")
        if chaos:
            self.chaos[f"{process.command} SIGTERM"] += 1

    async def active_relay(self) -> PaylinkProcess | None:
        try:
            lease = await self.db["leases"].find_one({"_id": "outbox-relay"})
        except PyMongoError:
            return None
        if lease is None:
            return None
        for relay in self.relays:
            if relay.alive and relay.process is not None and f":{relay.process.pid}:" in str(lease.get("owner")):
                return relay
        return None

    async def _watchdog(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for process in [*self.workers, *self.relays, *self.webhooks]:
                if id(process) in self._stopped or process.alive or process.process is None:
                    continue
                code = process.process.returncode
                self._unexpected.append(f"{process.command} exited by itself (code {code}); restarted")
                process.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    # --- services and faults ---------------------------------------------------------------------

    async def restart_service(self, service: str, downtime_s: float = 0.0) -> None:
        assert self.stack is not None, "service restarts need the private stack"
        seconds = await asyncio.to_thread(self.stack.restart, service, downtime_s)
        self.chaos[f"{service} restart"] += 1
        # Listening is not usable: wait (with a deadline) for leaders / a write / health before going on.
        waited = await wait_service(service, self.services, self.topics, READY_TIMEOUT_S)
        self.notes.append(f"{service} restarted in {seconds:.1f}s, usable {waited:.1f}s later")

    async def add_fault(self, spec: dict[str, Any], emulator: str = "stripe") -> str:
        client = self.stripe if emulator == "stripe" else self.shortener
        response = await client.post("/_emulator/faults", json=spec)
        response.raise_for_status()
        fault_id = f"{emulator}:{response.json()['id']}"
        self._fault_ids.append(fault_id)
        return fault_id

    async def clear_faults(self) -> int:
        """Removes this run's faults; returns how many times they fired."""
        fired = 0
        for emulator, client in (("stripe", self.stripe), ("shortener", self.shortener)):
            mine = {f.split(":", 1)[1] for f in self._fault_ids if f.startswith(f"{emulator}:")}
            if not mine:
                continue
            listed = (await client.get("/_emulator/faults")).json()
            faults = listed.get("data", listed) if isinstance(listed, dict) else listed
            for fault in faults:
                if fault["id"] in mine:
                    fired += int(fault.get("fired", 0))
                    await client.delete(f"/_emulator/faults/{fault['id']}")
        self._fault_ids.clear()
        self.chaos["faults fired"] += fired
        return fired

    async def stripe_config(self, **config: Any) -> None:
        (await self.stripe.post("/_emulator/config", json=config)).raise_for_status()

    async def stripe_counter(self, name: str) -> int:
        stats = (await self.stripe.get("/_emulator/stats")).json()
        return int(stats.get(name, 0))

    async def _probe(self, accounts: list[str]) -> None:
        for account in accounts:
            response = await self.stripe.post("/_emulator/faults", json={"path": "/v1", "account": account})
            response.raise_for_status()
            self._probe_ids[account] = response.json()["id"]

    async def _probe_hits(self) -> dict[str, int]:
        listed = (await self.stripe.get("/_emulator/faults")).json()
        faults = listed.get("data", listed) if isinstance(listed, dict) else listed
        by_id = {f["id"]: int(f.get("fired", 0)) for f in faults}
        hits = {account: by_id.get(probe, 0) for account, probe in self._probe_ids.items()}
        for probe in self._probe_ids.values():
            await self.stripe.delete(f"/_emulator/faults/{probe}")
        return hits

    # --- progress --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    async def at(self, fraction: float) -> None:
        """Sleeps until ``fraction`` of the production window has passed."""
        delay = fraction * self.scenario.produce_s - self.elapsed()
        if delay > 0:
            await asyncio.sleep(delay)

    # --- the run ---------------------------------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        return [self.settings.requests_topic, self.settings.results_topic]

    async def ready(self) -> None:
        """Before the suite's own clients produce: every partition has a leader, the store takes a write."""
        await wait_kafka(self.settings.kafka_bootstrap_servers, self.topics, READY_TIMEOUT_S)
        await wait_mongo(self.services.mongodb_uri, READY_TIMEOUT_S)

    async def _create_topics(self) -> None:
        await wait_kafka(self.settings.kafka_bootstrap_servers, [], READY_TIMEOUT_S)  # the broker answers
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        config = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
        try:
            partitions = self.settings.topic_partitions
            await admin.create_topics(
                [
                    NewTopic(self.settings.requests_topic, partitions, 1, topic_configs=config),
                    NewTopic(self.settings.results_topic, partitions, 1),
                ]
            )
        finally:
            await admin.close()

    def _messages(self, world: World) -> list[Sent]:
        mix = Mix(world, self.rng, self.scenario.weights)
        messages = mix.first() + [mix.next() for _ in range(self.scenario.requests - 1)]
        if self.scenario.hostile is not None:
            clean = max(1, int(len(messages) * self.scenario.hostile_after))
            self.state["clean_ids"] = {m.event_id for m in messages[:clean] if m.valid}
            for bad in self.scenario.hostile(world, self.rng, self.scenario.hostile_count):
                messages.insert(self.rng.randrange(clean, len(messages) + 1), bad)
        if self.scenario.cancels:
            messages = mix_cancels(world, self.rng, messages, self.scenario.cancels)
        return messages

    async def pay_and_cancel(self, count: int) -> None:
        """Mid-run: pays ``count`` created links on the emulator's hosted page (links no planned cancel
        names), then sends each a cancel, keyed by its contact: it must end ``already_paid``."""
        await self.at(0.5)
        named = {s.cancel_of for s in self.sent if s.cancel_of}
        planned = {s.event_id: s for s in self.sent if s.valid and s.cancel_of is None and s.expected == "created"}
        sent: list[Sent] = []
        for _ in range(60):
            if len(sent) >= count:
                break
            try:
                docs = [d async for d in self.db["sagas"].find({"status": "created"}, {"_id": 1, "result": 1})]
            except PyMongoError:
                docs = []
            candidates = [d for d in docs if d["_id"] in planned and d["_id"] not in named]
            self.rng.shuffle(candidates)
            for doc in candidates[: count - len(sent)]:
                result = doc.get("result") or {}
                body = {"account": result.get("stripe_account"), "outcome": "succeeded"}
                response = await self.stripe.post(
                    f"/_emulator/invoices/{result.get('invoice_id')}/hosted_payment", json=body
                )
                named.add(doc["_id"])
                if response.status_code != 200:
                    self.notes.append(
                        f"paying {result.get('invoice_id')}: {response.status_code} {response.text[:100]}"
                    )
                    continue
                self.chaos["links paid"] += 1
                link = planned[doc["_id"]]
                assert link.account_id is not None
                sent.append(cancel_sent("cancel_paid", cancel_body(link.account_id, link), link.key, {"already_paid"}))
            await asyncio.sleep(0.5)
        if sent:
            await self._produce_now(sent)
            self.sent.extend(sent)

    async def _produce_now(self, messages: list[Sent]) -> None:
        await self.ready()
        deadline = time.monotonic() + 120
        while True:  # the broker may be restarting (chaos_monkey): try again until it answers
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                enable_idempotence=True,
                request_timeout_ms=120_000,
            )
            try:
                await producer.start()
                break
            except KafkaError:
                await producer.stop()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        try:
            for message in messages:
                metadata = await (await producer.send(self.settings.requests_topic, message.raw, key=message.key))
                message.partition, message.offset = metadata.partition, metadata.offset
        finally:
            await producer.stop()

    async def _produce(self, messages: list[Sent]) -> None:
        """Sends ``messages`` over the scenario's produce window, in chunks. Chaos runs meanwhile: when a
        broker restart fails a send (``LeaderNotAvailableError`` in session 5's run D, under load), the
        unsent rest of the chunk goes again once every partition has a leader, with a fresh producer; a
        message sent twice is a duplicate delivery paylink must absorb anyway."""
        chunk = max(1, len(messages) // max(1, int(self.scenario.produce_s * 4)))
        pause = self.scenario.produce_s / max(1, len(messages) / chunk)
        deadline = time.monotonic() + self.scenario.produce_s + 2 * READY_TIMEOUT_S
        producer = await self._producer()
        try:
            for start in range(0, len(messages), chunk):
                pending = messages[start : start + chunk]
                while pending:
                    pending = await self._send(producer, pending)
                    if pending:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{len(pending)} messages could not be produced before the deadline")
                        await producer.stop()
                        producer = await self._producer()
                await asyncio.sleep(pause)
        finally:
            await producer.stop()

    async def _producer(self) -> AIOKafkaProducer:
        await self.ready()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_idempotence=True,
            max_request_size=MAX_MESSAGE_BYTES,
            request_timeout_ms=120_000,
        )
        await producer.start()
        return producer

    async def _send(self, producer: AIOKafkaProducer, batch: list[Sent]) -> list[Sent]:
        """Sends ``batch``; returns the messages whose send failed retryably (none when all went)."""
        futures = []
        for message in batch:
            try:
                futures.append(await producer.send(self.settings.requests_topic, message.raw, key=message.key))
            except KafkaError as error:
                if not error.retriable:
                    raise
                return batch[len(futures) :] + await self._settled(batch[: len(futures)], futures)
        return await self._settled(batch, futures)

    @staticmethod
    async def _settled(batch: list[Sent], futures: list[asyncio.Future[Any]]) -> list[Sent]:
        failed = []
        for message, future in zip(batch, futures, strict=True):
            try:
                metadata = await future
            except KafkaError as error:
                if not error.retriable:
                    raise
                failed.append(message)
                continue
            message.partition, message.offset = metadata.partition, metadata.offset
        return failed

    async def _settle(self, timeout_s: float) -> bool:
        """Waits until every message is committed and every result published; False on timeout."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await consumer.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                try:
                    committed, ends = await self._offsets(consumer, admin)
                    backlog = await self.db["outbox"].count_documents({"published": False})
                    running = await self.db["sagas"].count_documents({"status": {"$in": ["running", "compensating"]}})
                except Exception:  # a service restarting: look again shortly
                    await asyncio.sleep(0.5)
                    continue
                if committed == ends and backlog == 0 and running == 0:
                    return True
                await asyncio.sleep(0.3)
            return False
        finally:
            await consumer.stop()
            await admin.close()

    async def lag_now(self) -> tuple[dict[int, int], dict[int, int]]:
        """The group's committed offsets and the partitions' ends, now (the soak's sampler)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await consumer.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            return await self._offsets(consumer, admin)
        finally:
            await consumer.stop()
            await admin.close()

    async def _offsets(
        self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient
    ) -> tuple[dict[int, int], dict[int, int]]:
        topic = self.settings.requests_topic
        partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
        listed = await admin.list_consumer_group_offsets(self.settings.consumer_group)
        committed = {p: 0 if end == 0 else -1 for p, end in ends.items()}  # an empty partition needs no commit
        for tp, meta in listed.items():
            if tp.topic == topic:
                committed[tp.partition] = meta.offset
        return committed, ends

    async def _replay(self) -> int:
        """``paylink replay --all`` for the sagas that ended retryable; returns how many there were."""
        query = {"$or": [{"status": "failed", "failure.retryable": True}, {"status": "compensation_failed"}]}
        pending = [doc["_id"] async for doc in self.db["sagas"].find(query, {"_id": 1})]
        if not pending:
            return 0
        settings = self.settings.model_copy(update=self.scenario.replay_settings)
        replay = PaylinkProcess("replay", settings, self.log_dir, "--all", "--concurrency", "8").start()
        assert replay.process is not None
        code = await asyncio.to_thread(replay.process.wait, 300)
        if code not in (0, 1):  # 1: some ended failed again (the invariants will say which)
            self.notes.append(f"paylink replay exited {code}")
        return len(pending)

    async def _replay_cancels(self) -> int:
        """``paylink replay --event-id …`` for the cancels that gave up or were rejected retryably (after
        the requests' replay: a replayed request may have created the link since)."""
        query = {"$or": [{"status": "gave_up"}, {"status": "done", "result.retryable": True}]}
        pending = [str(doc["_id"]) async for doc in self.db["cancels"].find(query, {"_id": 1})]
        if not pending:
            return 0
        settings = self.settings.model_copy(update=self.scenario.replay_settings)
        args = [arg for cancel in pending for arg in ("--event-id", cancel)]
        replay = PaylinkProcess("replay", settings, self.log_dir, *args, "--concurrency", "8").start()
        assert replay.process is not None
        code = await asyncio.to_thread(replay.process.wait, 300)
        if code not in (0, 1):
            self.notes.append(f"paylink replay (cancels) exited {code}")
        return len(pending)

    async def _results(self) -> tuple[list[Document], int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await consumer.start()
        try:
            topic = self.settings.results_topic
            partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: list[Any] = []
            while True:
                behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
                if not behind:
                    break
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        results: list[Document] = []
        unreadable = 0
        for record in records:
            try:
                value = json.loads(record.value)
            except ValueError:
                unreadable += 1
                continue
            if isinstance(value, dict):
                value[PLACE] = (record.partition, record.offset)
                results.append(value)
            else:
                unreadable += 1
        return results, unreadable

    async def _observe(self, world: World) -> Observation:
        records, unreadable = await self._results()
        results = [r for r in records if r.get("event_type") not in LIFECYCLE_NAMES | {CANCEL_REJECTED}]
        cancel_results = [r for r in records if r.get("event_type") == CANCEL_REJECTED]
        lifecycle = [r for r in records if r.get("event_type") in LIFECYCLE_NAMES]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await consumer.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            committed, ends = await self._offsets(consumer, admin)
        finally:
            await consumer.stop()
            await admin.close()
        stripe: dict[str, dict[str, list[Document]]] = {}
        for tenant in [*world.active, world.neighbour, world.unconnected]:
            stripe[tenant.stripe_account] = {
                kind: await stripe_objects(self.services.stripe_base, tenant.stripe_account, kind)
                for kind in ("customer", "invoice", "invoiceitem")
            }
        stripe_events: dict[str, list[Document]] = {}
        if self.scenario.webhooks or self.scenario.cancels or self.scenario.paid_cancels:
            for tenant in world.active:
                stripe_events[tenant.stripe_account] = await stripe_objects(
                    self.services.stripe_base, tenant.stripe_account, "event"
                )
        remaining = await self.db["outbox"].count_documents({})
        return Observation(
            extra={"outbox_purged": len({r.get("event_id") for r in records}) - remaining},
            lifecycle=lifecycle,
            cancel_results=cancel_results,
            cancels={str(d["_id"]): d async for d in self.db["cancels"].find({})},
            lifecycles={str(d["_id"]): d async for d in self.db["lifecycles"].find({})},
            stripe_events=stripe_events,
            sagas={str(d["_id"]): d async for d in self.db["sagas"].find({})},
            dead_letters={str(d["_id"]): d async for d in self.db["dead_letters"].find({})},
            contacts={str(d["_id"]): d async for d in self.db["contacts"].find({})},
            results=results,
            unreadable_results=unreadable,
            committed=committed,
            end_offsets=ends,
            stripe=stripe,
            probe_hits=await self._probe_hits(),
            logs=logs_of(self.log_dir),
            unexpected_exits=list(self._unexpected),
            secrets=[
                self.settings.stripe_api_key.get_secret_value(),
                self.settings.shortener_token.get_secret_value(),
                *self.settings.webhook_secrets(),
            ],
        )

    async def _forget_webhooks(self) -> None:
        """Removes the run's endpoint; resets the emulator if the run moved its (process-wide) clock."""
        with contextlib.suppress(httpx.HTTPError):
            if self.reset_stripe_after:
                (await self.stripe.post("/_emulator/reset")).raise_for_status()
            elif self.webhook_endpoint is not None:
                await self.stripe.delete(f"/v1/webhook_endpoints/{self.webhook_endpoint}", headers=STRIPE_HEADERS)

    async def _forget_proxies(self) -> None:
        if self.toxi is None or self.routes is None:
            return
        for what, count in self.toxi.fired.items():
            self.chaos[what] += count
        with contextlib.suppress(RuntimeError, httpx.HTTPError):
            await self.toxi.reset()
            for proxy in self.routes.proxies:
                await self.toxi.delete(proxy.name)
        await self.toxi.close()

    def crashed(self, error: BaseException) -> ScenarioResult:
        """The result of a scenario that could not run to its checks: one ``goal_met`` violation."""
        checks = {name: Check(name) for name in INVARIANTS}
        checks["goal_met"].fail(f"the scenario itself failed: {error!r}"[:300])
        return ScenarioResult(self.scenario, len(self.sent), checks, +self.chaos, 0, 0, 0, Counter(), 0.0, self.notes)

    async def execute(self) -> ScenarioResult:
        began = time.monotonic()
        try:
            return await self._execute(began)
        finally:
            await self.stripe.aclose()
            await self.shortener.aclose()
            await self.mongo.close()

    async def _execute(self, began: float) -> ScenarioResult:
        scenario = self.scenario
        if (scenario.private or scenario.stripe_config) and self.stack is None:
            raise RuntimeError(f"{scenario.name} restarts services or configures the emulators: private stack only")
        await self._create_topics()
        if self.toxi is not None and self.routes is not None:
            for proxy in self.routes.proxies:
                await self.toxi.create(proxy)
        world = self.world = await seed_world(self.db, self.services.stripe_base)
        await self._probe(world.quiet_stripe_accounts)
        if scenario.webhooks:
            await self._register_webhooks()
        messages = self._messages(world)
        self.sent = messages
        for _ in range(scenario.workers):
            self.start_worker()
        for _ in range(scenario.relays):
            self.start_relay()
        if scenario.webhooks:
            self.start_webhooks()
            if not await self.webhooks_ready():
                self.notes.append("paylink webhooks was not ready within 30s")
        await self._processes_ready()
        stop_watch = asyncio.Event()
        watchdog = asyncio.create_task(self._watchdog(stop_watch))
        self._started = time.monotonic()
        faults_fired = 0
        if scenario.stripe_config:
            await self.stripe_config(**scenario.stripe_config)
        try:
            chaos = asyncio.ensure_future(scenario.chaos(self)) if scenario.chaos else None
            paying = (
                asyncio.ensure_future(self.pay_and_cancel(scenario.paid_cancels)) if scenario.paid_cancels else None
            )
            await self._produce(messages)
            if chaos is not None:
                await chaos
            if paying is not None:
                await paying
            faults_fired = await self.clear_faults()
            if scenario.stripe_config:
                await self.stripe_config(**dict.fromkeys(scenario.stripe_config))
            produced = self.elapsed()
            settled = await self._settle(scenario.settle_timeout_s)
            if not settled:
                self.notes.append(f"did not settle within {scenario.settle_timeout_s:.0f}s")
            if scenario.finish is not None:
                await scenario.finish(self)
                if not await self._settle(scenario.settle_timeout_s):
                    self.notes.append("did not settle after the scenario's finish")
            drained = self.elapsed()
            replayed = await self._replay()
            if replayed and not await self._settle(scenario.settle_timeout_s):
                self.notes.append("did not settle after the replay")
            cancels_replayed = await self._replay_cancels()
            if cancels_replayed:
                self.chaos["cancels replayed"] += cancels_replayed
                if not await self._settle(scenario.settle_timeout_s):
                    self.notes.append("did not settle after the cancels' replay")
            self.notes.append(
                f"produced and chaos {produced:.0f}s, settled +{drained - produced:.0f}s, "
                f"replay +{self.elapsed() - drained:.0f}s"
            )
            observation = await self._observe(world)
        finally:
            stop_watch.set()
            await watchdog
            running = [p for p in [*self.workers, *self.relays, *self.webhooks] if p.alive]
            for process in running:  # one restarted late may still be importing: SIGTERM would end it raw
                if process.command != "webhooks":
                    with contextlib.suppress(NotReady):
                        await self.until_started(process, 60)
            await asyncio.gather(*(self.terminate(p, chaos=False) for p in running))
            await self._forget_webhooks()
            await self._forget_proxies()
        observation.unexpected_exits = list(self._unexpected)
        checks = check_all(world, messages, self.settings.requests_topic, observation)
        if scenario.goal is not None:
            for problem in scenario.goal(self, observation):
                checks["goal_met"].fail(problem)
        outcomes: Counter[str] = Counter()
        for saga in observation.sagas.values():
            result = saga.get("result") or {}
            outcomes["created" if result.get("event_type") == "PaymentLinkCreated" else "failed"] += 1
        outcomes["dead letters"] = len(observation.dead_letters)
        sent_cancels = Counter(s.label for s in messages if s.cancel_of is not None)
        if sent_cancels:
            kinds = ", ".join(f"{n} {label}" for label, n in sorted(sent_cancels.items()))
            self.notes.append(f"{sum(sent_cancels.values())} cancel messages sent: {kinds}")
        retryable = len({r.get("event_id") for r in observation.cancel_results if r.get("retryable")})
        if retryable:
            self.notes.append(f"{retryable} retryable cancel rejection(s) on the topic, replayed")
        for cancel in observation.cancels.values():
            result = cancel.get("result") or {}
            kind = "voided" if result.get("event_type") == "PaymentLinkVoided" else str(result.get("reason"))
            outcomes[f"cancel {kind}"] += 1
        if sum(c.violations for c in checks.values()) == 0 and self.stack is None:
            await self.mongo.drop_database(self.db.name)
        return ScenarioResult(
            scenario=scenario,
            sent=len(messages),
            checks=checks,
            chaos=+self.chaos,
            faults_fired=faults_fired,
            duplicates=observation.duplicates,
            replayed=replayed,
            outcomes=outcomes,
            seconds=time.monotonic() - began,
            notes=self.notes,
        )
