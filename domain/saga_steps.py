"""The saga's forward steps and their compensation, on one saga record.

Each step first looks at the persisted record and skips what is done, then does its work and persists
the outcome before the next step starts. ``SagaRun.record`` is always the latest stored version, so a
failure handler can persist on top of it without a self-inflicted version conflict.

Steps and their compensations (verb pairs)::

    prepare          (validate)  resolve the due date once          —
    ensure_customer  (customer)  find or create, then link          — (kept: linked and reusable)
    create_draft     (draft)     draft invoice                      delete_draft (void_invoice if finalised)
    add_items        (items)     invoice items on the draft         go with the draft
    finalise         (finalise)  finalise, auto_advance=false       void_invoice
    shorten          (shorten)   short URL, never fails the saga    —
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from domain.billing import DraftInvoice, InvoiceItem, NewCustomer, customer_search_query
from domain.crm import Contact
from domain.errors import PermanentError, Reason, excerpt
from domain.events import AmountLineItem, LineItem, PaymentLinkRequested, Step
from domain.intake import due_timestamp, resolve_due_date
from domain.keys import customer_key
from domain.ports import Billing, Clock, CrmDirectory, SagaStore, Shortener
from domain.saga_record import SagaRecord

log = logging.getLogger("paylink.saga")


@dataclass(frozen=True)
class SagaPorts:
    crm: CrmDirectory
    billing: Billing
    shortener: Shortener
    store: SagaStore
    clock: Clock
    items_per_call: int = 1


def first_unfinished_step(record: SagaRecord) -> Step:
    if record.due_date is None:
        return Step.VALIDATE
    if record.customer_id is None:
        return Step.CUSTOMER
    if record.invoice_id is None:
        return Step.DRAFT
    if record.items_added < len(record.request["line_items"]):
        return Step.ITEMS
    if record.invoice is None:
        return Step.FINALISE
    return Step.SHORTEN


class SagaRun:
    """One pass over a saga record: forward steps, or compensation."""

    def __init__(self, ports: SagaPorts, record: SagaRecord) -> None:
        self._ports = ports
        self.record = record
        self.request: PaymentLinkRequested = record.request_event()
        self.current_step = first_unfinished_step(record)

    async def persist(self, **changes: Any) -> SagaRecord:
        self.record = await self._ports.store.save(self.record.advance(self._ports.clock.now(), **changes))
        return self.record

    async def forward(self) -> None:
        steps: list[tuple[Step, Callable[[], Awaitable[None]]]] = [
            (Step.VALIDATE, self.prepare),
            (Step.CUSTOMER, self.ensure_customer),
            (Step.DRAFT, self.create_draft),
            (Step.ITEMS, self.add_items),
            (Step.FINALISE, self.finalise),
            (Step.SHORTEN, self.shorten),
        ]
        for step, action in steps:
            self.current_step = step
            await action()

    async def prepare(self) -> None:
        if self.record.due_date is None:
            await self.persist(due_date=resolve_due_date(self.request, self._ports.clock.now()))

    async def ensure_customer(self) -> None:
        if self.record.customer_id is not None:
            return
        stripe_account = await self._connected_account()
        contact = await self._contact()
        linked = contact.stripe_customers.get(stripe_account)
        if linked is None:
            customer_id = await self._find_or_create_customer(stripe_account, contact)
            linked = await self._ports.crm.link_customer(
                self.request.account_id, self.request.contact_id, stripe_account, customer_id
            )
            if linked != customer_id:
                log.info("another customer was linked first; using it", extra=self._log_context())
        await self.persist(
            stripe_account=stripe_account, description=self._invoice_description(contact), customer_id=linked
        )

    async def _connected_account(self) -> str:
        stripe_account = await self._ports.crm.stripe_account_of(self.request.account_id)
        if not stripe_account:
            raise PermanentError(
                Reason.ACCOUNT_NOT_CONNECTED,
                f"account {excerpt(self.request.account_id)} has no connected Stripe account "
                "(accounts.stripe.account_id is missing)",
            )
        return stripe_account

    async def _contact(self) -> Contact:
        contact = await self._ports.crm.find_contact(self.request.account_id, self.request.contact_id)
        if contact is None:
            raise PermanentError(
                Reason.CONTACT_NOT_FOUND,
                f"contact {excerpt(self.request.contact_id)} not found in account {excerpt(self.request.account_id)}",
            )
        return contact

    async def _find_or_create_customer(self, stripe_account: str, contact: Contact) -> str:
        billing = self._ports.billing
        query = customer_search_query(contact.email, contact.phone)
        if query is not None:
            found = await billing.search_customers(stripe_account, query)
            if found:
                return found[0]
        customer = NewCustomer.from_contact(contact)
        key = customer_key(stripe_account, contact.account_id, contact.id, customer.stripe_params())
        return await billing.create_customer(stripe_account, customer, key)

    def _invoice_description(self, contact: Contact) -> str:
        if self.request.description:
            return self.request.description
        who = contact.display_name or contact.email or f"contact {contact.id}"
        return excerpt(f"Payment requested from {who}", 500)

    async def create_draft(self) -> None:
        record = self.record
        if record.invoice_id is not None:
            return
        assert record.due_date is not None and record.customer_id and record.stripe_account and record.description
        metadata = {
            **self.request.metadata,
            "payment_link_id": record.payment_link_id,
            "account_id": self.request.account_id,
            "contact_id": self.request.contact_id,
        }
        if self.request.note_id is not None:
            metadata["note_id"] = self.request.note_id
        draft = DraftInvoice(
            customer_id=record.customer_id,
            currency=self.request.currency,
            due_date=due_timestamp(record.due_date),
            description=record.description,
            metadata=metadata,
        )
        invoice_id = await self._ports.billing.create_draft_invoice(record.stripe_account, draft, record.keys.draft())
        await self.persist(invoice_id=invoice_id)

    async def add_items(self) -> None:
        lines = self.request.line_items
        while self.record.items_added < len(lines):
            start = self.record.items_added
            stop = min(start + max(1, self._ports.items_per_call), len(lines))
            batch = [self._invoice_item(index, lines[index]) for index in range(start, stop)]
            assert self.record.stripe_account and self.record.invoice_id
            await self._ports.billing.add_invoice_items(
                self.record.stripe_account, self.record.invoice_id, batch, self.record.keys.items(start, stop)
            )
            await self.persist(items_added=stop)

    def _invoice_item(self, index: int, line: LineItem) -> InvoiceItem:
        assert self.record.customer_id is not None
        item = InvoiceItem(
            index=index,
            quantity=line.quantity,
            currency=self.request.currency,
            customer_id=self.record.customer_id,
            idempotency_key=self.record.keys.item(index),
        )
        if isinstance(line, AmountLineItem):
            return replace(item, description=line.description, unit_amount=line.amount)
        return replace(item, price_id=line.price_id)

    async def finalise(self) -> None:
        if self.record.invoice is not None:
            return
        assert self.record.stripe_account and self.record.invoice_id
        invoice = await self._ports.billing.finalize_invoice(
            self.record.stripe_account, self.record.invoice_id, self.record.keys.finalise()
        )
        if not invoice.hosted_invoice_url:
            raise PermanentError(Reason.STRIPE_INVALID_REQUEST, "Stripe finalised the invoice without a hosted URL")
        await self.persist(invoice=invoice)

    async def shorten(self) -> None:
        if self.record.shortened:
            return
        assert self.record.invoice is not None and self.record.invoice.hosted_invoice_url
        try:
            short_url = await self._ports.shortener.shorten(self.record.invoice.hosted_invoice_url)
        except Exception:
            # The port promises not to raise; a broken adapter still must not fail a finalised invoice.
            log.warning("shortener raised; using the long URL", exc_info=True, extra=self._log_context())
            short_url = None
        await self.persist(shortened=True, short_url=short_url)

    async def undo_invoice(self) -> bool:
        """Compensation: delete the draft, or void it once finalised (already gone counts as done).

        Returns True when the saga had an invoice to undo, False when there was nothing to compensate.
        """
        stripe_account, invoice_id = self.record.stripe_account, self.record.invoice_id
        if stripe_account is None or invoice_id is None:
            return False
        billing = self._ports.billing
        status = await billing.invoice_status(stripe_account, invoice_id)
        if status == "draft":
            await billing.delete_draft(stripe_account, invoice_id)
        elif status in ("open", "uncollectible"):
            await billing.void_invoice(stripe_account, invoice_id, self.record.keys.void())
        elif status == "paid":
            raise PermanentError(
                Reason.INTERNAL_ERROR,
                f"invoice {invoice_id} is already paid; it cannot be voided (refund it)",
            )
        return True

    def _log_context(self) -> dict[str, str]:
        return {"payment_link_id": self.record.payment_link_id, "step": str(self.current_step)}
