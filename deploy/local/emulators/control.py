"""Shared machinery of the local emulators: faults, latency, rate limits, stats and the control API.

Every emulator (Stripe, shortener) owns one :class:`ControlPlane`. Its API, mounted under ``/_emulator``:

=========================  =====================================================================
``GET  /_emulator/health``  200 ``{"status": "ok", "emulator": <name>}``
``POST /_emulator/reset``   forget everything: objects, faults, config, stats, rate-limit windows
``GET  /_emulator/config``  the current config
``POST /_emulator/config``  partial update, e.g. ``{"latency_ms": 20, "rate_limit_per_account": 25}``;
                            ``null`` or ``0`` disables a setting; unknown keys -> 400
``POST /_emulator/faults``  register one fault (:mod:`.faults`); answers 201 with the fault and its ``id``
``GET  /_emulator/faults``  the registered faults with ``remaining`` and ``fired`` counts
``DELETE /_emulator/faults``       remove all faults;  ``DELETE /_emulator/faults/{id}``: one
``GET  /_emulator/stats``   ``{"requests": {"POST /v1/invoices 200": n, ...}, "total": n, ...}``
=========================  =====================================================================

Every matching fault that hits adds its latency; the first hitting fault with a status decides the outcome
(later status faults are not consumed). Control requests are never faulted, delayed or counted.

Latency from config applies to every API request (not to ``/_emulator``); the rate limit admits at most
N requests per rolling second per account (requests rejected with 429 do not count toward the window).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .faults import ControlError, Fault, FaultHit, opt_int, parse_fault


class ConnectionReset(Exception):
    """Raised by a handler to make the server drop the connection without a response."""


class RateLimiter:
    """At most ``limit`` admitted requests per rolling second per key (deque of admission times)."""

    def __init__(self) -> None:
        self.windows: dict[str, deque[float]] = {}

    def allow(self, key: str, limit: int | None) -> bool:
        if not limit:
            return True
        now = time.monotonic()
        window = self.windows.setdefault(key, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True


ErrorFactory = Callable[[int, "Fault | None"], Response]
Normalizer = Callable[[str], str]


class ControlPlane:
    """Config, faults, rate limiter and stats of one emulator, plus the request pipeline around them."""

    def __init__(self, name: str, normalize_path: Normalizer, extra_config: dict[str, Any] | None = None):
        self.name = name
        self.normalize_path = normalize_path
        self.extra_defaults = dict(extra_config or {})
        self.reset_hooks: list[Callable[[], None]] = []
        self.config_validators: dict[str, Callable[[Any], Any]] = {}
        self.reset()

    def reset(self) -> None:
        self.config: dict[str, Any] = {"latency_ms": None, "rate_limit_per_account": None}
        self.config.update({k: (list(v) if isinstance(v, list) else v) for k, v in self.extra_defaults.items()})
        self.faults: list[Fault] = []
        self.fault_seq = 0
        self.limiter = RateLimiter()
        self.stats: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        for hook in self.reset_hooks:
            hook()

    # -- config / faults -------------------------------------------------------------------------
    def update_config(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise ControlError("config is a JSON object")
        validated: dict[str, Any] = {}
        for key, value in body.items():
            if key in ("latency_ms", "rate_limit_per_account"):
                validated[key] = opt_int(body, key, 0) or None
            elif key in self.config_validators:
                validated[key] = self.config_validators[key](value)
            else:
                raise ControlError(f"unknown config key: {key}")
        self.config.update(validated)

    def add_fault(self, spec: Any) -> Fault:
        self.fault_seq += 1
        fault = parse_fault(spec, f"flt_{self.fault_seq}")
        self.faults.append(fault)
        return fault

    def pick_faults(self, method: str, path: str, account: str | None, phase: str) -> FaultHit:
        hit = FaultHit()
        for fault in self.faults:
            if fault.phase != phase or not fault.matches(method, path, account):
                continue
            if fault.count is not None and fault.fired >= fault.count:
                continue
            if fault.status is not None and hit.fault is not None:
                continue
            if fault.rate < 1.0 and random.random() >= fault.rate:
                continue
            fault.fired += 1
            hit.latency_ms += fault.latency_ms
            if fault.status is not None:
                hit.fault = fault
        if hit.fault is not None:
            self.counters["faults_fired"] += 1
        return hit

    # -- the pipeline ----------------------------------------------------------------------------
    async def run(
        self,
        request: Request,
        *,
        account: str | None,
        execute: Callable[[], Awaitable[Response]],
        error: ErrorFactory,
        reject: Callable[[], Response | None] | None = None,
    ) -> Response:
        """Latency, ``reject`` (auth), rate limit, faults before, ``execute``, faults after; counted."""
        method, path = request.method, request.url.path
        status = 0
        try:
            if self.config["latency_ms"]:
                await asyncio.sleep(self.config["latency_ms"] / 1000)
            response = reject() if reject is not None else None
            if response is None:
                response = await self._admitted(method, path, account, execute, error)
            status = response.status_code
            return response
        finally:
            self.stats[f"{method} {self.normalize_path(path)} {status}"] += 1

    async def _admitted(
        self,
        method: str,
        path: str,
        account: str | None,
        execute: Callable[[], Awaitable[Response]],
        error: ErrorFactory,
    ) -> Response:
        if not self.limiter.allow(account or "", self.config["rate_limit_per_account"]):
            self.counters["rate_limited"] += 1
            return error(429, None)
        before = self.pick_faults(method, path, account, "before") if self.faults else FaultHit()
        if before.latency_ms:
            await asyncio.sleep(before.latency_ms / 1000)
        if before.fault is not None:
            return _fault_outcome(before.fault, error)
        response = await execute()
        after = self.pick_faults(method, path, account, "after") if self.faults else FaultHit()
        if after.latency_ms:
            await asyncio.sleep(after.latency_ms / 1000)
        if after.fault is not None:
            return _fault_outcome(after.fault, error)
        return response

    def stats_body(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        for key, n in self.stats.items():
            by_status[key.rsplit(" ", 1)[1]] += n
        return {
            "requests": dict(sorted(self.stats.items())),
            "total": sum(self.stats.values()),
            "by_status": dict(sorted(by_status.items())),
            **{k: self.counters.get(k, 0) for k in ("faults_fired", "rate_limited")},
            **{k: v for k, v in self.counters.items() if k not in ("faults_fired", "rate_limited")},
        }


def _fault_outcome(fault: Fault, error: ErrorFactory) -> Response:
    if fault.status == 0:
        raise ConnectionReset
    assert fault.status is not None
    return error(fault.status, fault)
