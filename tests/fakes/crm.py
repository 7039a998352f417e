"""An in-memory CRM store (``accounts`` and ``contacts`` documents of the contract) for ``CrmDirectory``."""

from __future__ import annotations

from typing import Any

from domain.crm import Contact
from domain.errors import PermanentError, Reason
from tests.fakes.faults import FaultPlan


class FakeCrm:
    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.faults = FaultPlan()
        self.calls: list[str] = []

    def add_account(self, account_id: str, stripe_account: str | None = "acct_1") -> None:
        self.accounts[account_id] = {"_id": account_id, "stripe": {"account_id": stripe_account}}

    def add_contact(self, account_id: str, contact_id: str, **fields: Any) -> None:
        self.contacts[contact_id] = {"_id": contact_id, "account_id": account_id, **fields}

    def linked_customer(self, contact_id: str, stripe_account: str) -> str | None:
        links: dict[str, str] = self.contacts[contact_id].get("stripe_customers", {})
        return links.get(stripe_account)

    async def stripe_account_of(self, account_id: str) -> str | None:
        self._enter("stripe_account_of")
        account = self.accounts.get(account_id)
        return None if account is None else account.get("stripe", {}).get("account_id")

    async def find_contact(self, account_id: str, contact_id: str) -> Contact | None:
        self._enter("find_contact")
        document = self.contacts.get(contact_id)
        if document is None or document.get("account_id") != account_id:
            return None
        return Contact.from_document(document)

    async def link_customer(self, account_id: str, contact_id: str, stripe_account: str, customer_id: str) -> str:
        self._enter("link_customer")
        document = self.contacts.get(contact_id)
        if document is None or document.get("account_id") != account_id:
            raise PermanentError(Reason.CONTACT_NOT_FOUND, f"contact {contact_id} vanished")
        links = document.setdefault("stripe_customers", {})
        linked: str = links.setdefault(stripe_account, customer_id)  # an existing link wins
        return linked

    def _enter(self, call: str) -> None:
        self.faults.check(call)
        self.calls.append(call)
