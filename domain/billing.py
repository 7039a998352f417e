"""Value objects of the Billing port, and the Stripe parameters they stand for.

The saga decides *what* Stripe must do; ``stripe_params()`` pins *how* in one tested place, so every
adapter sends the same parameters (and the same parameters on every retry, as idempotency keys demand).
An adapter may pass them straight to stripe-python (``**item.stripe_params(invoice_id)``).

Decisions:
- an amount line becomes ``unit_amount_decimal`` + ``quantity`` (not ``amount``, which Stripe treats as
  the line's total): the invoice then shows "3 x 10.00", as the producer described it;
- the draft uses ``pending_invoice_items_behavior=exclude``, so it never sweeps up another request's
  pending items of the same customer;
- contact data is clipped to Stripe's limits (name 256, address fields 200); a phone over 20 characters
  or a country that is not a 2-letter code is left out rather than failing the request. An email over 512
  characters would be left out too, but ``stripe_email`` then says the contact has none Stripe can use, and
  the saga refuses such a contact before calling Stripe (``contact_missing_email``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from domain.crm import Contact

MAX_NAME_CHARS = 256
MAX_EMAIL_CHARS = 512
MAX_PHONE_CHARS = 20
MAX_ADDRESS_FIELD_CHARS = 200

InvoiceStatus = Literal["draft", "open", "paid", "uncollectible", "void"]


@dataclass(frozen=True)
class StripeAddress:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None

    def stripe_params(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class NewCustomer:
    """A customer to create on the connected account, from a CRM contact."""

    name: str | None
    email: str | None
    phone: str | None
    address: StripeAddress | None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_contact(cls, contact: Contact) -> NewCustomer:
        email = stripe_email(contact)
        phone = contact.phone if contact.phone and len(contact.phone) <= MAX_PHONE_CHARS else None
        name = contact.display_name
        return cls(
            name=name[:MAX_NAME_CHARS] if name else None,
            email=email,
            phone=phone,
            address=_stripe_address(contact),
            metadata={"account_id": contact.account_id, "contact_id": contact.id},
        )

    def stripe_params(self) -> dict[str, Any]:
        """``POST /v1/customers`` parameters: only the fields the contact has."""
        params: dict[str, Any] = {"metadata": dict(self.metadata)}
        for name in ("name", "email", "phone"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        if self.address is not None:
            params["address"] = self.address.stripe_params()
        return params


def stripe_email(contact: Contact) -> str | None:
    """The contact's email as its Stripe customer gets it: None when it has none, or one over Stripe's limit."""
    return contact.email if contact.email and len(contact.email) <= MAX_EMAIL_CHARS else None


def _stripe_address(contact: Contact) -> StripeAddress | None:
    source = contact.address
    if source is None:
        return None
    country = source.country.upper() if source.country and len(source.country) == 2 else None
    address = StripeAddress(
        line1=_clip(source.street),
        line2=_clip(source.unit),
        city=_clip(source.city),
        state=_clip(source.state_province),
        postal_code=_clip(source.postal_code),
        country=country if country and country.isalpha() else None,
    )
    return address if address.stripe_params() else None


def _clip(value: str | None) -> str | None:
    return value[:MAX_ADDRESS_FIELD_CHARS] if value else None


def customer_search_query(email: str | None, phone: str | None) -> str | None:
    """Stripe Search query matching either identifier, or None when the contact has neither."""
    clauses = [f'{name}:"{_escape(value)}"' for name, value in (("email", email), ("phone", phone)) if value]
    return " OR ".join(clauses) or None


def _escape(value: str) -> str:
    # Stripe's query language: values are double-quoted; backslash and quote are escaped.
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class DraftInvoice:
    """A one-off invoice to be finalised (never sent by Stripe: paylink hands out the link)."""

    customer_id: str
    currency: str
    due_date: int  # Unix timestamp (noon UTC of the due day)
    description: str
    metadata: dict[str, str]

    def stripe_params(self) -> dict[str, Any]:
        """``POST /v1/invoices`` parameters."""
        return {
            "customer": self.customer_id,
            "currency": self.currency,
            "collection_method": "send_invoice",
            "due_date": self.due_date,
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "description": self.description,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class InvoiceItem:
    """One line of the request, to be added to the draft. Exactly one of ``price_id``/``unit_amount``."""

    index: int  # position in the request's line_items
    quantity: int
    currency: str
    customer_id: str
    idempotency_key: str  # for adapters adding one item per call
    price_id: str | None = None
    description: str | None = None
    unit_amount: int | None = None  # minor units

    def stripe_params(self, invoice_id: str) -> dict[str, Any]:
        """``POST /v1/invoiceitems`` parameters (API ≥ 2025-03-31: ``pricing.price``, no ``price``)."""
        params: dict[str, Any] = {
            "invoice": invoice_id,
            "customer": self.customer_id,
            "quantity": self.quantity,
            "metadata": {"line_index": str(self.index)},
        }
        if self.price_id is not None:
            params["pricing"] = {"price": self.price_id}
        else:
            params["currency"] = self.currency
            params["description"] = self.description
            params["unit_amount_decimal"] = str(self.unit_amount)
        return params


class FinalizedInvoice(BaseModel):
    """The parts of a finalised invoice the result event needs (persisted on the saga record)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    number: str | None
    status: str  # "open" (or "paid" when the total was zero)
    amount_due: int
    currency: str
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    due_date: int | None  # Unix timestamp, as Stripe returns it
