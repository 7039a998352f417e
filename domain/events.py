"""The external contract: ``PaymentLinkRequested`` in, ``PaymentLinkCreated`` / ``PaymentLinkFailed`` out.

Validation that needs no clock lives on the models; rules that need "now" (``due_date`` in the future)
live in ``domain.intake.resolve_due_date`` so no model ever reads the wall clock.

Decisions beyond DESIGN.md, all enforced here so nothing invalid reaches Stripe:
- the request is parsed strictly (no ``"3"`` for an int) and rejects unknown fields, so a typo such as
  ``days_untill_due`` fails loudly instead of being ignored; results are parsed tolerantly (consumers
  keep working when fields are added);
- ``event_id`` must be a UUID in its 8-4-4-4-12 form (any case) and is normalised to lower case;
- ``currency`` is a code of ``domain.currencies.CURRENCIES`` in any case, normalised to lower case, so
  ``"EUR"`` from a producer, a file or ``paylink publish --currency EUR`` is the same request as ``"eur"``;
- ``amount`` ≤ 99,999,999 and ``amount * quantity`` ≤ 99,999,999 minor units (Stripe's 8-digit limit);
- ``metadata``: ≤ 20 keys of 1..40 characters without ``[``/``]``, values ≤ 500 characters, and not
  the keys the saga sets itself (``payment_link_id``, ``account_id``, ``contact_id``, ``note_id``),
  so the invoice's metadata stays within Stripe's 50 keys and the saga's keys cannot be spoofed;
- identifiers (``account_id``, ``contact_id``, ``note_id``, ``correlation_id``) are 1..200 characters.
The published JSON Schema states every one of these rules JSON Schema can express
(``domain.request_schema``).
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from domain.currencies import normalised_currency
from domain.errors import Reason, excerpt

MAX_LINE_ITEMS = 250
MAX_QUANTITY = 10_000
MAX_AMOUNT = 99_999_999
MAX_DESCRIPTION_CHARS = 500
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY_CHARS = 40
MAX_METADATA_VALUE_CHARS = 500
MAX_DAYS_UNTIL_DUE = 365
MAX_ID_CHARS = 200
UUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_UUID_FORM = re.compile(UUID_PATTERN.strip("^$"))
RESERVED_METADATA_KEYS = frozenset({"payment_link_id", "account_id", "contact_id", "note_id"})

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
# Validation context of a request read back from its saga record (``SagaRecord.request_event``): it passed
# the door when it arrived, so a currency of the right form that the list no longer holds still loads (and
# Stripe judges it again) instead of breaking the saga's resume, compensation or replay.
STORED_REQUEST: dict[str, bool] = {"stored_request": True}


class Step(StrEnum):
    """Where a saga failed (``PaymentLinkFailed.failed_step``); CRM lookups belong to ``customer``."""

    VALIDATE = "validate"
    CUSTOMER = "customer"
    DRAFT = "draft"
    ITEMS = "items"
    FINALISE = "finalise"
    SHORTEN = "shorten"


_INPUT = ConfigDict(strict=True, frozen=True, extra="forbid")
_OUTPUT = ConfigDict(frozen=True, extra="ignore")


class PriceLineItem(BaseModel):
    """A line priced by an existing Stripe price of the connected account."""

    model_config = _INPUT
    price_id: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^\S+$")]
    quantity: Quantity = 1


class AmountLineItem(BaseModel):
    """A free-form line: ``amount`` is the unit price in the currency's minor units."""

    model_config = _INPUT
    description: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DESCRIPTION_CHARS)]
    amount: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    quantity: Quantity = 1

    @model_validator(mode="after")
    def _total_within_stripe_limit(self) -> AmountLineItem:
        if self.amount * self.quantity > MAX_AMOUNT:
            raise PydanticCustomError(
                "line_total_too_large",
                "amount * quantity must be at most {limit} minor units",
                {"limit": MAX_AMOUNT},
            )
        return self


def _line_item_kind(item: Any) -> str:
    if isinstance(item, dict):
        return "price" if "price_id" in item else "amount"
    return "price" if isinstance(item, PriceLineItem) else "amount"


LineItem = Annotated[
    Annotated[PriceLineItem, Tag("price")] | Annotated[AmountLineItem, Tag("amount")],
    Discriminator(_line_item_kind),
]


class PaymentLinkRequested(BaseModel):
    """Input, schema_version 1: "send this contact a payment link"."""

    model_config = _INPUT
    event_id: str = Field(description="UUID; the request's idempotency key")
    event_type: Literal["PaymentLinkRequested"]
    schema_version: Literal[1]
    occurred_at: AwareDatetime
    correlation_id: Identifier | None = None
    account_id: Identifier
    contact_id: Identifier
    currency: str = Field(
        description="ISO 4217 code of a currency Stripe supports, in any case; normalised to lower case",
        json_schema_extra={"pattern": "^[A-Za-z]{3}$"},
    )
    due_date: date | None = None
    days_until_due: Annotated[int, Field(ge=1, le=MAX_DAYS_UNTIL_DUE)] | None = None
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    line_items: Annotated[list[LineItem], Field(min_length=1, max_length=MAX_LINE_ITEMS)]
    note_id: Identifier | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("event_id")
    @classmethod
    def _event_id_is_uuid(cls, value: str) -> str:
        # Only the 8-4-4-4-12 form (any case), as the published schema says: uuid.UUID alone also reads
        # braces, "urn:uuid:" and bare hex, which no JSON Schema pattern could match exactly.
        if not _UUID_FORM.fullmatch(value):
            raise PydanticCustomError(
                "uuid_format",
                "event_id must be a UUID (8-4-4-4-12 hexadecimal digits), got {value}",
                {"value": excerpt(value)},
            )
        return str(uuid.UUID(value))

    @field_validator("currency")
    @classmethod
    def _currency_is_a_supported_iso_code(cls, value: str, info: ValidationInfo) -> str:
        code = normalised_currency(value)
        if code is not None:
            return code
        if info.context == STORED_REQUEST and len(value) == 3 and value.isascii() and value.isalpha():
            return value.lower()
        raise PydanticCustomError(
            "currency",
            "currency must be an ISO 4217 code Stripe supports, such as 'eur' or 'USD', got {value}",
            {"value": excerpt(value, 10)},
        )

    @field_validator("line_items", mode="before")
    @classmethod
    def _each_line_has_one_shape(cls, items: Any) -> Any:
        if not isinstance(items, list):
            return items
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            priced = "price_id" in item
            free_form = "amount" in item or "description" in item
            if priced == free_form:
                raise PydanticCustomError(
                    "line_item_shape",
                    "line_items[{index}] must have either price_id (and quantity) or description and "
                    "amount (and quantity), not both and not neither",
                    {"index": index},
                )
        return items

    @field_validator("metadata")
    @classmethod
    def _metadata_within_stripe_limits(cls, metadata: dict[str, str]) -> dict[str, str]:
        if len(metadata) > MAX_METADATA_KEYS:
            raise PydanticCustomError(
                "metadata_too_many_keys",
                "metadata may have at most {limit} keys, got {count}",
                {"limit": MAX_METADATA_KEYS, "count": len(metadata)},
            )
        for key, value in metadata.items():
            problem = _metadata_entry_problem(key, value)
            if problem:
                raise PydanticCustomError(
                    "metadata_entry",
                    "metadata key {key}: {problem}",
                    {"key": excerpt(key), "problem": problem},
                )
        return metadata

    @model_validator(mode="after")
    def _exactly_one_due_rule(self) -> PaymentLinkRequested:
        if (self.due_date is None) == (self.days_until_due is None):
            raise PydanticCustomError(
                "due_date_choice", "give exactly one of due_date (YYYY-MM-DD) or days_until_due (1..365)"
            )
        return self


def _metadata_entry_problem(key: str, value: str) -> str:
    if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
        return f"keys must be 1..{MAX_METADATA_KEY_CHARS} characters"
    if "[" in key or "]" in key:
        return "keys must not contain square brackets"
    if key in RESERVED_METADATA_KEYS:
        return f"is reserved (paylink sets {', '.join(sorted(RESERVED_METADATA_KEYS))} itself)"
    if len(value) > MAX_METADATA_VALUE_CHARS:
        return f"values must be at most {MAX_METADATA_VALUE_CHARS} characters"
    return ""


class PaymentLinkCreated(BaseModel):
    """Output: the invoice is finalised (not sent) and payable at ``url``."""

    model_config = _OUTPUT
    event_id: str
    event_type: Literal["PaymentLinkCreated"] = "PaymentLinkCreated"
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime
    payment_link_id: str
    correlation_id: str | None = None
    account_id: str
    contact_id: str
    stripe_account: str
    customer_id: str
    invoice_id: str
    invoice_number: str | None
    status: str = Field(description="the invoice's status: open (paid if its total was zero)")
    amount_due: int = Field(description="minor units")
    currency: str
    due_date: date
    hosted_invoice_url: str
    invoice_pdf: str | None
    short_url: str | None = Field(description="null when shortening failed")
    url: str = Field(description="short_url if any, else hosted_invoice_url")
    # Defaults to 1 so that a result stored on a saga before the field existed still loads.
    attempt: int = Field(1, ge=1, description="1 for the first run, +1 for every replay; the highest wins")


class PaymentLinkFailed(BaseModel):
    """Output: the request ended without a payable invoice (see ``reason`` and ``message``).

    ``account_id``/``contact_id`` are null only for an unparseable input they could not be recovered
    from. ``compensated`` is true when a compensating action (deleting/voiding the draft) ran and
    succeeded; false when nothing needed compensating, when compensation failed, or when the saga gave
    up on a transient fault and kept its state for ``paylink replay``.
    """

    model_config = _OUTPUT
    event_id: str
    event_type: Literal["PaymentLinkFailed"] = "PaymentLinkFailed"
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime
    payment_link_id: str
    correlation_id: str | None = None
    account_id: str | None
    contact_id: str | None
    reason: Reason
    message: str
    retryable: bool
    failed_step: Step
    compensated: bool
    attempt: int = Field(ge=1, description="1 for the first run, +1 for every replay; the highest wins")


ResultEvent = Annotated[PaymentLinkCreated | PaymentLinkFailed, Field(discriminator="event_type")]


def event_json_schemas() -> dict[str, dict[str, Any]]:
    from domain.cancel_events import cancel_json_schemas  # they build on this module
    from domain.request_schema import request_schema

    """JSON Schemas of the request, its results and the cancel's events, keyed by ``event_type`` (inputs as
    validated, outputs as sent)."""
    return {
        "PaymentLinkRequested": request_schema(),
        "PaymentLinkCreated": PaymentLinkCreated.model_json_schema(mode="serialization"),
        "PaymentLinkFailed": PaymentLinkFailed.model_json_schema(mode="serialization"),
        **cancel_json_schemas(),
    }
