"""Deterministic Stripe idempotency keys.

Invoice keys are ``paylink-<payment_link_id>-r<restarts>-<step>[-<index>]``: stable across retries,
redeliveries and replays that resume (so Stripe answers a repeated POST with the first result), and
distinct per step and line. ``restarts`` only grows when a permanently failed, compensated saga is
replayed from scratch: its old draft is gone, so the new run must create new objects.

The customer key is scoped to (connected account, CRM account, contact) plus the customer's
parameters, so concurrent requests for one contact converge on one customer, while a contact whose
data changed in between gets a fresh key instead of Stripe's "same key, other parameters" error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

PREFIX = "paylink"


def customer_key(stripe_account: str, account_id: str, contact_id: str, params: dict[str, Any]) -> str:
    scope = json.dumps([stripe_account, account_id, contact_id, params], sort_keys=True, ensure_ascii=True)
    return f"{PREFIX}-customer-{hashlib.sha256(scope.encode()).hexdigest()[:48]}"


@dataclass(frozen=True)
class InvoiceKeys:
    """Keys of one saga's invoice POSTs (``payment_link_id`` is a canonical UUID: keys stay < 255)."""

    payment_link_id: str
    restarts: int = 0

    def _key(self, *parts: object) -> str:
        return "-".join([PREFIX, self.payment_link_id, f"r{self.restarts}", *map(str, parts)])

    def draft(self) -> str:
        return self._key("draft")

    def item(self, index: int) -> str:
        return self._key("item", index)

    def items(self, start: int, stop: int) -> str:
        """Key of a bulk call adding lines ``start..stop-1`` (e.g. Stripe's ``add_lines``)."""
        return self._key("items", start, stop)

    def finalise(self) -> str:
        return self._key("finalise")

    def void(self) -> str:
        return self._key("void")
