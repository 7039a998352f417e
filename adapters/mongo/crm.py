"""The CRM directory over the ``accounts`` and ``contacts`` collections (docs/contract.md, "CRM store").

Ids: a 24-hex id is looked up as an ObjectId first, then as a string (CRMs store either); any other id
as a string. A contact whose ``account_id`` is not the request's is "not found": tenants never see each
other's contacts. The customer link is the only write, and it never overwrites an existing link.
"""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from adapters.mongo.errors import store_errors
from domain.crm import Contact
from domain.errors import PermanentError, Reason, excerpt

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]+$")


def _candidate_ids(value: str) -> list[Any]:
    return [ObjectId(value), value] if _OBJECT_ID.match(value) else [value]


class MongoCrmDirectory:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._accounts = database["accounts"]
        self._contacts = database["contacts"]

    async def stripe_account_of(self, account_id: str) -> str | None:
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
