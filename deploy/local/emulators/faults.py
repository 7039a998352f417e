"""Faults of the emulators' control API: their spec, its validation, and which requests they match.

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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


def opt_int(spec: dict[str, Any], key: str, minimum: int, maximum: int | None = None) -> int | None:
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
    status = opt_int(spec, "status", 0, 599)
    if status is not None and 0 < status < 400:
        raise ControlError("status must be 0 (connection reset) or an HTTP error status 400..599")
    rate = spec.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ControlError("rate must be a number in [0, 1]")
    count = opt_int(spec, "count", 1)
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
        latency_ms=opt_int(spec, "latency_ms", 0) or 0,
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
