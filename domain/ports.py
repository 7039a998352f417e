"""The ports the saga drives. Adapters (MongoDB, Stripe, HTTP shortener) implement these protocols.

General rules for every adapter:
- raise only ``RetryableError`` (transient: network, timeouts, 429, 5xx, Mongo failover) or
  ``PermanentError`` (retrying cannot help), with a ``reason`` from ``domain.errors.Reason``
  (stores use ``internal_error``, Stripe ``stripe_unavailable`` for transient faults) and a message
  without secrets. Anything else is treated as a bug by the worker;
- never retry internally beyond a short, bounded budget: the worker owns the retry policy;
- methods are coroutines, except ``Clock`` and ``IdGenerator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Protocol

from domain.billing import DraftInvoice, FinalizedInvoice, InvoiceItem, InvoiceStatus, NewCustomer
from domain.cancel_events import PaymentLinkCancelRejected
from domain.cancel_record import CancelRecord
from domain.crm import Contact
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.lifecycle import InvoiceSnapshot, LifecycleRecord
from domain.lifecycle_events import LifecycleEvent
from domain.saga_record import SagaRecord


class CrmDirectory(Protocol):
    """The CRM store: ``accounts`` and ``contacts`` (read; the customer link is the only write)."""

    async def stripe_account_of(self, account_id: str) -> str | None:
        """The account's ``stripe.account_id`` ("acct_…").

        None when the account does not exist or has no ``stripe.account_id`` (→ ``account_not_connected``).
        Read-only; ``RetryableError(internal_error)`` on store faults.
        """
        ...

    async def find_contact(self, account_id: str, contact_id: str) -> Contact | None:
        """The contact, mapped with ``Contact.from_document``.

        None when it does not exist or its ``account_id`` differs from ``account_id`` (→
        ``contact_not_found``). Lookup is the adapter's job: a 24-hex ``contact_id`` is tried as an
        ObjectId ``_id`` first, then as a string; any other id as a string. Read-only;
        ``RetryableError(internal_error)`` on store faults.
        """
        ...

    async def link_customer(self, account_id: str, contact_id: str, stripe_account: str, customer_id: str) -> str:
        """Sets ``stripe_customers.<stripe_account> = customer_id`` only if no link exists for that Stripe
        account, and returns the customer that is linked afterwards (an existing link wins; do it
        atomically, e.g. a conditional update then a read). Idempotent. Raises
        ``PermanentError(contact_not_found)`` if the contact vanished, ``RetryableError`` on store faults.
        """
        ...


class Billing(Protocol):
    """Stripe, on a connected account (``Stripe-Account: stripe_account`` on every call).

    Every POST sends the given ``idempotency_key`` and the parameters of the value object's
    ``stripe_params()``: identical on every retry. Permanent errors use ``price_not_found`` (unknown
    price), ``invalid_due_date`` (Stripe rejected ``due_date``), ``stripe_permission_denied`` (401/403,
    account not reachable) or ``stripe_invalid_request`` (any other 4xx, including idempotency
    conflicts); 409/429/5xx/network are ``RetryableError(stripe_unavailable)``.
    """

    async def search_customers(self, stripe_account: str, query: str) -> list[str]:
        """Customer ids matching ``query`` (built by ``customer_search_query``; Stripe Search syntax),
        best match first; [] when none. Read-only."""
        ...

    async def create_customer(self, stripe_account: str, customer: NewCustomer, idempotency_key: str) -> str:
        """Creates the customer (``customer.stripe_params()``); returns its id ("cus_…")."""
        ...

    async def create_draft_invoice(self, stripe_account: str, draft: DraftInvoice, idempotency_key: str) -> str:
        """Creates the draft (``draft.stripe_params()``); returns its id ("in_…")."""
        ...

    async def add_invoice_items(
        self, stripe_account: str, invoice_id: str, items: Sequence[InvoiceItem], idempotency_key: str
    ) -> None:
        """Adds ``items`` (in order) to the draft ``invoice_id``.

        Either one ``POST /v1/invoiceitems`` per item with ``item.stripe_params(invoice_id)`` and
        ``item.idempotency_key``, or one bulk call (``POST /v1/invoices/{id}/add_lines``) with
        ``idempotency_key``; the saga re-sends the same batch with the same keys after a fault, so a
        partly done batch completes without duplicates. ``price_not_found`` for an unknown price.
        """
        ...

    async def find_draft_invoice(self, stripe_account: str, customer_id: str, payment_link_id: str) -> str | None:
        """The newest draft invoice of ``customer_id`` whose ``metadata.payment_link_id`` is ``payment_link_id``
        (among the customer's 100 newest drafts), or None. Read-only, and strongly consistent (Stripe's
        list, not its search): how a resumed saga finds the draft an earlier pass created but did not record."""
        ...

    async def invoice_line_indexes(self, stripe_account: str, invoice_id: str) -> set[int]:
        """The ``metadata.line_index`` of every line on the invoice (paylink's items carry their request
        line's index; lines without one are left out). Read-only: how a resumed saga learns which lines an
        earlier pass added before it could record them."""
        ...

    async def finalize_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> FinalizedInvoice:
        """Finalises with ``auto_advance=false`` (Stripe sends nothing). Idempotent: if the invoice is
        already finalised (e.g. the idempotency key expired after a long pause), return its state."""
        ...

    async def invoice_status(self, stripe_account: str, invoice_id: str) -> InvoiceStatus | None:
        """The invoice's status, or None when it does not exist (deleted). Read-only; used to choose
        between ``delete_draft`` and ``void_invoice`` when compensating."""
        ...

    async def retrieve_invoice(self, stripe_account: str, invoice_id: str) -> InvoiceSnapshot | None:
        """The invoice's current state as paylink's lifecycle reads it (status, amounts, due date, the
        moments of its transitions, ``metadata.payment_link_id``), or None when no such invoice exists on
        ``stripe_account`` (deleted, or another account's). Read-only; used by ``paylink reconcile``.
        ``failure_message`` is only what the invoice itself shows (``last_finalization_error``): payment
        failures are learnt from ``invoice.payment_failed`` events, not from a read."""
        ...

    async def delete_draft(self, stripe_account: str, invoice_id: str) -> None:
        """Deletes a draft invoice (its invoice items go with it). Not found = already gone: no error."""
        ...

    async def void_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        """Voids a finalised (open/uncollectible) invoice. Already void: no error."""
        ...


class Shortener(Protocol):
    async def shorten(self, url: str) -> str | None:
        """A short URL for ``url``, or None on any failure (logged). Never raises."""
        ...


class SagaStore(Protocol):
    """Saga records, keyed by ``payment_link_id``, with optimistic concurrency on ``version``."""

    async def create_if_absent(self, record: SagaRecord) -> SagaRecord:
        """Inserts ``record`` unless one with its ``payment_link_id`` exists; returns the stored record
        (the existing one wins, so concurrent first deliveries converge): ``record`` itself, the same object,
        when this call inserted it (how a saga tells its first pass from a resume). ``RetryableError`` on
        faults."""
        ...

    async def load(self, payment_link_id: str) -> SagaRecord | None:
        """The record, or None when there is none."""
        ...

    async def save(self, record: SagaRecord) -> SagaRecord:
        """Replaces the stored record if its version still equals ``record.version``, storing and
        returning it with ``version + 1``. Raises ``ConcurrentUpdateError`` (a ``RetryableError``) when
        the stored version differs or the record is missing."""
        ...

    async def find_replayable(
        self,
        *,
        reason: str | None = None,
        account_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[SagaRecord]:
        """For ``paylink replay``: records with status ``failed`` or ``compensation_failed`` matching the
        filters (``failure.reason``, ``account_id``, ``since <= updated_at < until``), oldest first."""
        ...


OutputEvent = PaymentLinkCreated | PaymentLinkFailed | LifecycleEvent | PaymentLinkCancelRejected


class Outbox(Protocol):
    async def append(self, event: OutputEvent) -> None:
        """Stores ``event`` for the relay, once per ``event.event_id`` (a repeat is a no-op). The Kafka
        key is ``event.contact_id`` (None only for unparseable input). ``RetryableError`` on faults."""
        ...

    async def append_unless_published(self, event: OutputEvent) -> None:
        """``append``, unless an entry with ``event.event_id`` was published already (and is still kept):
        for an event that may be long out, so that making sure of it does not publish it again."""
        ...


class StepSpan(Protocol):
    def produced(self, record: SagaRecord) -> None:
        """Notes what the step produced (Stripe ids) from the record it saved."""
        ...


class StepObserver(Protocol):
    """Watches each try of a saga step (tracing: one span per try). The body of ``step`` is the try;
    an exception leaving it is the try's failure."""

    def step(self, name: str, attempt: int) -> AbstractContextManager[StepSpan]: ...


class _Unobserved:
    def produced(self, record: SagaRecord) -> None:
        return None


class Unobserved:
    """The ``StepObserver`` that watches nothing (unit tests, tools)."""

    def step(self, name: str, attempt: int) -> AbstractContextManager[StepSpan]:
        return nullcontext(_Unobserved())


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        """A new random UUID, canonical string form (ids of result events)."""
        ...


class LifecycleStore(Protocol):
    """Links' lifecycle records, keyed by ``payment_link_id``, with optimistic concurrency on ``version``."""

    async def create_if_absent(self, record: LifecycleRecord) -> LifecycleRecord:
        """Inserts ``record`` unless one exists for its link; returns the stored one (the first wins)."""
        ...

    async def load(self, payment_link_id: str) -> LifecycleRecord | None:
        """The record, or None when the link has none yet."""
        ...

    async def save(self, record: LifecycleRecord) -> LifecycleRecord:
        """Replaces the stored record if its version still equals ``record.version``; returns it with
        ``version + 1``. ``ConcurrentUpdateError`` when the stored version differs or it is missing."""
        ...


class CancelStore(Protocol):
    """Cancels' records, keyed by ``cancel_request_id`` (the cancel's ``event_id``), with optimistic
    concurrency on ``version``: of two runners of one cancel (a redelivery racing a replay) one saves."""

    async def create_if_absent(self, record: CancelRecord) -> CancelRecord:
        """Inserts ``record`` unless one exists for its cancel; returns the stored one (the first wins).
        ``RetryableError`` on store faults."""
        ...

    async def load(self, cancel_request_id: str) -> CancelRecord | None:
        """The record, or None when there is none."""
        ...

    async def save(self, record: CancelRecord) -> CancelRecord:
        """Replaces the stored record if its version still equals ``record.version``; returns it with
        ``version + 1``. ``ConcurrentUpdateError`` when the stored version differs or it is missing."""
        ...
