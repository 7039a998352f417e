"""What the saga reads from the CRM store: a contact (with its Stripe customer links).

``Contact.from_document`` maps a ``contacts`` document of the contract (docs/contract.md, "CRM store") so
every adapter reads it the same way; ``_id`` may be an ObjectId or a string (both become ``str``).
Blank strings count as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ContactAddress:
    street: str | None = None
    unit: str | None = None
    city: str | None = None
    state_province: str | None = None
    postal_code: str | None = None
    country: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ContactAddress:
        return cls(**{name: _text(document.get(name)) for name in cls.__dataclass_fields__})

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class Contact:
    id: str
    account_id: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: ContactAddress | None = None
    # Stripe connected account id → customer id on that account.
    stripe_customers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Contact:
        raw_address = document.get("address")
        address = ContactAddress.from_document(raw_address) if isinstance(raw_address, Mapping) else None
        raw_links = document.get("stripe_customers")
        links = raw_links if isinstance(raw_links, Mapping) else {}
        return cls(
            id=str(document["_id"]),
            account_id=str(document.get("account_id")),
            name=_text(document.get("name")),
            first_name=_text(document.get("first_name")),
            last_name=_text(document.get("last_name")),
            email=_text(document.get("email")),
            phone=_text(document.get("phone")),
            address=None if address is None or address.is_empty() else address,
            stripe_customers={str(k): v for k, v in links.items() if isinstance(v, str) and v},
        )

    @property
    def display_name(self) -> str | None:
        """``name``, else "first last", else None."""
        if self.name:
            return self.name
        joined = " ".join(part for part in (self.first_name, self.last_name) if part)
        return joined or None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None
