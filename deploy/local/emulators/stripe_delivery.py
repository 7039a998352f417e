"""Webhook deliveries: signed ``POST``s to the endpoints an event matches, in the background, with retries.

Each (event, endpoint) pair is one delivery, sent by its own asyncio task (never inside the API request
that caused the event). An attempt succeeds on any 2xx; a non-2xx answer, a timeout or a refused
connection is retried after the next delay of the schedule (config ``webhook_retry_delays_s``, default
1, 2, 4, 8 s: Stripe's hours-long test-mode schedule, compressed), so a delivery makes at most
``1 + len(schedule)`` attempts, then is ``failed``. Every attempt re-signs the body with the wall-clock
time (not the emulator's moved clock: the receiver checks the timestamp against its own clock), as
Stripe signs: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.

Delivery faults (control API, :class:`DeliveryFault`), matched when a delivery is created:
``drop`` (never sent: a lost webhook, only reconciliation finds the event), ``duplicate`` (sent twice, as
two deliveries), ``delay`` (``delay_ms`` before the first attempt), ``hold`` (kept until released; a release
sends the held deliveries one after the other, newest first by default: a reorder).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .faults import ControlError, opt_int
from .stripe_store import Account, Obj, Store
from .stripe_webhooks import endpoints_for

FAULT_KINDS = ("drop", "duplicate", "delay", "hold")
DEFAULT_DELAYS_S = [1.0, 2.0, 4.0, 8.0]
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class DeliveryFault:
    id: str
    kind: str
    type: str | None = None
    endpoint: str | None = None
    account: str | None = None
    count: int | None = None
    delay_ms: int = 0
    fired: int = 0

    def matches(self, event: Obj, endpoint_id: str) -> bool:
        return (
            (self.count is None or self.fired < self.count)
            and (self.type is None or self.type == event["type"])
            and (self.endpoint is None or self.endpoint == endpoint_id)
            and (self.account is None or self.account == event.get("account"))
        )

    def public(self) -> dict[str, Any]:
        remaining = None if self.count is None else self.count - self.fired
        return {**{k: v for k, v in self.__dict__.items()}, "remaining": remaining}


def parse_delivery_fault(spec: Any, fault_id: str) -> DeliveryFault:
    if not isinstance(spec, dict):
        raise ControlError("a delivery fault is a JSON object")
    unknown = set(spec) - {"kind", "type", "endpoint", "account", "count", "delay_ms"}
    if unknown:
        raise ControlError(f"unknown delivery fault keys: {sorted(unknown)}")
    if spec.get("kind") not in FAULT_KINDS:
        raise ControlError(f"kind must be one of {list(FAULT_KINDS)}")
    for key in ("type", "endpoint", "account"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ControlError(f"{key} must be a string")
    delay_ms = opt_int(spec, "delay_ms", 0) or 0
    if spec["kind"] == "delay" and not delay_ms:
        raise ControlError("a delay fault needs delay_ms > 0")
    return DeliveryFault(
        fault_id, spec["kind"], spec.get("type"), spec.get("endpoint"), spec.get("account"),
        opt_int(spec, "count", 1), delay_ms,
    )  # fmt: skip


@dataclass
class Delivery:
    id: str
    event: Obj
    endpoint_id: str
    url: str
    secret: str
    delay_ms: int = 0
    duplicate_of: str | None = None
    status: str = "pending"  # pending | retrying | succeeded | failed | dropped | held
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        last = self.attempts[-1] if self.attempts else {}
        return {
            "id": self.id,
            "event": self.event["id"],
            "type": self.event["type"],
            "account": self.event.get("account"),
            "endpoint": self.endpoint_id,
            "url": self.url,
            "status": self.status,
            "attempt_count": len(self.attempts),
            "last_response_code": last.get("response_code"),
            "last_error": last.get("error"),
            "duplicate_of": self.duplicate_of,
            "attempts": self.attempts,
        }


class Deliverer:
    """Creates the deliveries of each new event and runs them; the control API reads and steers it."""

    def __init__(self, store: Store, config: dict[str, Any]) -> None:
        self.config = config
        self.reset(store)

    def reset(self, store: Store) -> None:
        for task in getattr(self, "tasks", ()):
            task.cancel()
        self.store = store
        self.deliveries: dict[str, Delivery] = {}
        self.faults: list[DeliveryFault] = []
        self.held: list[Delivery] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.seq = itertools.count(1)

    def add_fault(self, spec: Any) -> DeliveryFault:
        fault = parse_delivery_fault(spec, f"wfl_{next(self.seq)}")
        self.faults.append(fault)
        return fault

    # -- new events ------------------------------------------------------------------------------
    def on_event(self, acct: Account, event: Obj) -> None:
        for owner, endpoint in endpoints_for(self.store, acct, event["type"]):
            self._create(event, endpoint["id"], endpoint["url"], owner.webhook_secrets[endpoint["id"]])

    def _create(self, event: Obj, endpoint_id: str, url: str, secret: str, duplicate_of: str | None = None) -> None:
        delivery = Delivery(f"whd_{next(self.seq)}", event, endpoint_id, url, secret, duplicate_of=duplicate_of)
        self.deliveries[delivery.id] = delivery
        event["pending_webhooks"] += 1
        hits = {f.kind: f for f in self.faults if duplicate_of is None and f.matches(event, endpoint_id)}
        for fault in hits.values():
            fault.fired += 1
        delivery.delay_ms = hits["delay"].delay_ms if "delay" in hits else 0
        if "drop" in hits:
            delivery.status = "dropped"
            return
        if "duplicate" in hits:
            self._create(event, endpoint_id, url, secret, duplicate_of=delivery.id)
        if "hold" in hits:
            delivery.status = "held"
            self.held.append(delivery)
            return
        self._spawn(self._run(delivery))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def release(self, reverse: bool) -> list[str]:
        held, self.held = self.held, []
        order = held[::-1] if reverse else held

        async def one_by_one() -> None:
            for delivery in order:  # each first attempt ends before the next starts: arrival order is fixed
                delivery.status = "pending"
                if await self._attempt(delivery):
                    continue
                self._spawn(self._run(delivery, after_first=True))

        self._spawn(one_by_one())
        return [d.id for d in order]

    # -- sending ---------------------------------------------------------------------------------
    async def _run(self, delivery: Delivery, after_first: bool = False) -> None:
        if delivery.delay_ms and not after_first:
            await asyncio.sleep(delivery.delay_ms / 1000)
        if not after_first and await self._attempt(delivery):
            return
        delays: list[float] = self.config["webhook_retry_delays_s"]
        while len(delivery.attempts) <= len(delays):
            delivery.status = "retrying"
            await asyncio.sleep(delays[len(delivery.attempts) - 1])
            if await self._attempt(delivery):
                return
        delivery.status = "failed"

    async def _attempt(self, delivery: Delivery) -> bool:
        body = json.dumps(delivery.event, indent=2).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign(delivery.secret, body, now),
        }
        record: dict[str, Any] = {"attempt": len(delivery.attempts) + 1, "at": now}
        record.update(response_code=None, error=None)
        delivery.attempts.append(record)
        try:
            async with httpx.AsyncClient(timeout=self.config["webhook_timeout_s"]) as http:
                response = await http.post(delivery.url, content=body, headers=headers)
            record["response_code"] = response.status_code
            ok = 200 <= response.status_code < 300
        except httpx.TimeoutException:
            record["error"], ok = "timeout", False
        except httpx.HTTPError as exc:
            record["error"], ok = f"{type(exc).__name__}: {exc}", False
        if ok:
            delivery.status = "succeeded"
            delivery.event["pending_webhooks"] = max(delivery.event["pending_webhooks"] - 1, 0)
        return ok


def validate_delays(value: Any) -> list[float]:
    if value is None:
        return list(DEFAULT_DELAYS_S)
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 3600 for v in value
    ):
        raise ControlError("webhook_retry_delays_s must be a list of seconds (0..3600), or null for the default")
    return [float(v) for v in value]


def validate_timeout(value: Any) -> float:
    if value is None:
        return 10.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise ControlError("webhook_timeout_s must be a number of seconds in (0, 60], or null for the default")
    return float(value)
