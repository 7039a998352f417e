"""Shared machinery of the local emulators: faults, latency, rate limits, stats and the control API.

Every emulator (Stripe, shortener) owns one :class:`ControlPlane`. Its API, mounted under ``/_emulator``:

=========================  =====================================================================
``GET  /_emulator/health``  200 ``{"status": "ok", "emulator": <name>}``
``POST /_emulator/reset``   forget everything: objects, faults, config, stats, rate-limit windows
``GET  /_emulator/config``  the current config
``POST /_emulator/config``  partial update, e.g. ``{"latency_ms": 20, "rate_limit_per_account": 25}``;
                            ``null`` or ``0`` disables a setting; unknown keys -> 400
``POST /_emulator/faults``  register one fault (below); answers 201 with the fault and its ``id``
``GET  /_emulator/faults``  the registered faults with ``remaining`` and ``fired`` counts
``DELETE /_emulator/faults``       remove all faults;  ``DELETE /_emulator/faults/{id}``: one
``GET  /_emulator/stats``   ``{"requests": {"POST /v1/invoices 200": n, ...}, "total": n, ...}``
=========================  =====================================================================

A fault is ``{"path", "method"?, "status"?, "rate"?, "count"?, "latency_ms"?, "phase"?, "account"?,
"code"?, "message"?, "should_retry"?}``:

* ``path``: without ``*`` or ``{...}`` it is a prefix ending at a segment boundary (``/v1/invoices``
  matches ``/v1/invoices`` and ``/v1/invoices/in_1/finalize``; ``/v1/invoice`` matches neither).
  With wildcards it must match the whole path: ``{id}`` (any ``{name}``) is exactly one segment,
  ``*`` is any run of characters including ``/``. Examples: ``/v1/invoices/{id}/finalize``, ``/v1/*``.
* ``method``: optional, case-insensitive. ``account``: optional, only requests of that account/client.
* ``status``: an HTTP status answered with the emulator's error body, ``0`` to reset the TCP
  connection without any response, or absent/``null`` for a latency-only fault.
* ``rate`` (default 1): probability that a matching request is hit; ``count`` (default unlimited):
  at most that many hits, after which the fault stays listed with ``remaining: 0``.
* ``latency_ms``: delay added when the fault hits (before execution, or after it for ``phase=after``).
* ``phase``: ``before`` (default; nothing executes) or ``after`` (the request executes, its result
  is saved - e.g. under its idempotency key - and then the client gets the fault: a lost response).
* ``code``/``message``/``should_retry``: override the error body's code/message and the
  ``Stripe-Should-Retry`` header (Stripe emulator only).

Every matching fault that hits adds its latency; the first hitting fault with a status decides the
outcome (later status faults are not consumed). Control requests are never faulted, delayed or counted.

Latency from config applies to every API request (not to ``/_emulator``); the rate limit admits at most
N requests per rolling second per account (requests rejected with 429 do not count toward the window).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

PHASES = ("before", "after")
FAULT_KEYS = {
    "path",
    "method",
    "status",
    "rate",
    "count",
    "latency_ms",
    "phase",
    "account",
    "code",
    "message",
    "should_retry",
}


class ControlError(ValueError):
    """A bad control request (answered 400)."""


class ConnectionReset(Exception):
    """Raised by a handler to make the server drop the connection without a response."""


@dataclass
class Fault:
    id: str
    path: str
    method: str | None = None
    status: int | None = None
    rate: float = 1.0
    count: int | None = None
    latency_ms: int = 0
    phase: str = "before"
    account: str | None = None
    code: str | None = None
    message: str | None = None
    should_retry: bool | None = None
    fired: int = 0
    pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if "*" in self.path or "{" in self.path:
            parts = re.split(r"(\*|\{[^/{}]*\})", self.path)
            regex = "".join(".*" if p == "*" else "[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            self.pattern = re.compile(regex + r"\Z")

    def matches(self, method: str, path: str, account: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.account is not None and self.account != account:
            return False
        if self.pattern is not None:
            return self.pattern.match(path) is not None
        prefix = self.path.rstrip("/")
        return path == prefix or path.startswith(prefix + "/") or prefix == ""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "method": self.method,
            "status": self.status,
            "rate": self.rate,
            "count": self.count,
            "latency_ms": self.latency_ms,
            "phase": self.phase,
            "account": self.account,
            "code": self.code,
            "message": self.message,
            "should_retry": self.should_retry,
            "fired": self.fired,
            "remaining": None if self.count is None else self.count - self.fired,
        }


def _opt_int(spec: dict[str, Any], key: str, minimum: int, maximum: int | None = None) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ControlError(f"{key} must be an integer >= {minimum} or null")
    if maximum is not None and value > maximum:
        raise ControlError(f"{key} must be <= {maximum}")
    return value


def parse_fault(spec: Any, fault_id: str) -> Fault:
    if not isinstance(spec, dict):
        raise ControlError("a fault is a JSON object")
    unknown = set(spec) - FAULT_KEYS
    if unknown:
        raise ControlError(f"unknown fault keys: {sorted(unknown)}")
    path = spec.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ControlError("path is required and starts with '/'")
    method = spec.get("method")
    if method is not None and not isinstance(method, str):
        raise ControlError("method must be a string")
    status = _opt_int(spec, "status", 0, 599)
    if status is not None and 0 < status < 400:
        raise ControlError("status must be 0 (connection reset) or an HTTP error status 400..599")
    rate = spec.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ControlError("rate must be a number in [0, 1]")
    count = _opt_int(spec, "count", 1)
    phase = spec.get("phase") or "before"
    if phase not in PHASES:
        raise ControlError("phase must be 'before' or 'after'")
    for key in ("account", "code", "message"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ControlError(f"{key} must be a string")
    should_retry = spec.get("should_retry")
    if should_retry is not None and not isinstance(should_retry, bool):
        raise ControlError("should_retry must be a boolean")
    return Fault(
        id=fault_id,
        path=path,
        method=method.upper() if method else None,
        status=status,
        rate=float(rate),
        count=count,
        latency_ms=_opt_int(spec, "latency_ms", 0) or 0,
        phase=phase,
        account=spec.get("account"),
        code=spec.get("code"),
        message=spec.get("message"),
        should_retry=should_retry,
    )


@dataclass
class FaultHit:
    latency_ms: int = 0
    fault: Fault | None = None  # the fault deciding the outcome (has a status)


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
                validated[key] = _opt_int(body, key, 0) or None
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
