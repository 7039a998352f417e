"""The CRM directory over the ``accounts`` and ``contacts`` collections (docs/contract.md, "CRM store").

Ids: a 24-hex id is looked up as an ObjectId first, then as a string (CRMs store either); any other id
as a string. A contact whose ``account_id`` is not the request's is "not found": tenants never see each
other's contacts. The customer link is the only write, and it never overwrites an existing link.

An account's connected Stripe account may be kept for ``account_ttl_s`` (``PAYLINK_CRM_ACCOUNT_CACHE_S``):
each saga needs it, and a tenant's connection changes rarely, so a store round trip per saga bought
nothing. Only a connected account is kept: a tenant connecting is seen at once, a tenant disconnecting
(or reconnecting another Stripe account) within the TTL.
"""

from __future__ import annotations

import re
import time
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.errors import store_errors
from domain.crm import Contact
from domain.errors import PermanentError, Reason, excerpt

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]+$")
ACCOUNTS_KEPT = 10_000  # beyond this many tenants, expired entries are dropped before one is added


def _candidate_ids(value: str) -> list[Any]:
    return [ObjectId(value), value] if _OBJECT_ID.match(value) else [value]


class MongoCrmDirectory:
    def __init__(self, database: AsyncDatabase[dict[str, Any]], account_ttl_s: float = 0.0) -> None:
        """``account_ttl_s``: how long a connected account is kept in this process (0: read every time)."""
        self._accounts = database["accounts"]
        self._contacts = database["contacts"]
        self._account_ttl_s = account_ttl_s
        self._connected: dict[str, tuple[float, str]] = {}  # account_id -> (monotonic expiry, acct_…)

    async def stripe_account_of(self, account_id: str) -> str | None:
        kept = self._connected.get(account_id)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        connected = await self._read_stripe_account(account_id)
        if connected is None:
            self._connected.pop(account_id, None)
        elif self._account_ttl_s > 0:
            self._keep(account_id, connected)
        return connected

    def _keep(self, account_id: str, connected: str) -> None:
        now = time.monotonic()
        if len(self._connected) >= ACCOUNTS_KEPT:
            self._connected = {key: kept for key, kept in self._connected.items() if kept[0] > now}
            if len(self._connected) >= ACCOUNTS_KEPT:
                return  # that many live tenants: read the rest every time rather than grow without bound
        self._connected[account_id] = (now + self._account_ttl_s, connected)

    async def _read_stripe_account(self, account_id: str) -> str | None:
        with store_errors("account lookup"):
            account = await self._accounts.find_one({"_id": {"$in": _candidate_ids(account_id)}}, {"stripe": 1})
        stripe_info = account.get("stripe") if account else None
        connected = stripe_info.get("account_id") if isinstance(stripe_info, dict) else None
        # Only a well-formed id may reach the Stripe-Account header.
        return connected if isinstance(connected, str) and _STRIPE_ACCOUNT.match(connected) else None

    async def _contact_document(self, account_id: str, contact_id: str) -> dict[str, Any] | None:
        with store_errors("contact lookup"):
            for candidate in _candidate_ids(contact_id):
                document = await self._contacts.find_one({"_id": candidate})
                if document is not None:
                    return document if str(document.get("account_id")) == account_id else None
        return None

    async def find_contact(self, account_id: str, contact_id: str) -> Contact | None:
        document = await self._contact_document(account_id, contact_id)
        return Contact.from_document(document) if document else None

    async def link_customer(self, account_id: str, contact_id: str, stripe_account: str, customer_id: str) -> str:
        # One round trip when the link is new (the usual case): the conditional update sets it only on
        # the tenant's contact without a link for this account, so "modified" means ours is the link.
        # Otherwise (linked before, or no such contact) one read says which link won.
        field = f"stripe_customers.{stripe_account}"
        owner = {"$in": _candidate_ids(account_id)}  # stored as a string or an ObjectId, like the ids
        with store_errors("customer link"):
            for candidate in _candidate_ids(contact_id):
                result = await self._contacts.update_one(
                    {"_id": candidate, "account_id": owner, field: {"$exists": False}}, {"$set": {field: customer_id}}
                )
                if result.modified_count == 1:
                    return customer_id
        document = await self._contact_document(account_id, contact_id)
        if document is None:
            raise PermanentError(Reason.CONTACT_NOT_FOUND, f"contact {excerpt(contact_id)} vanished")
        links = document.get("stripe_customers") or {}
        return str(links.get(stripe_account, customer_id))
