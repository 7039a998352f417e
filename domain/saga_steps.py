"""The saga's forward steps and their compensation, on one saga record.

``STEPS`` (at the end) is the one table of the saga, Temporal-style: per step its name (``failed_step``
in results), its done-predicate on the record, its ``do`` and its ``undo``. It drives everything:

- ``SagaRun.forward`` runs, in order, every step whose predicate says it is not done, repeating its
  ``do`` until it is (``items`` adds ``items_per_call`` lines per ``do``); done steps are skipped, so a
  redelivered or replayed saga resumes where it stopped;
- ``first_unfinished_step`` is the first step not done (``shorten`` once all are), where a saga that
  gives up reports it failed;
- ``SagaRun.compensate`` runs the ``undo`` of every done step, last first.

Each ``do`` does its work, then records its outcome through one of the record's named transitions
(``domain.saga_record``): ``validate`` to ``items`` save it before the next step starts; ``finalise``
and ``shorten``, safe to repeat even after Stripe forgot their keys, only ``advance`` the record, and
their outcome is stored by the saga's final save with the result (ADR 0016). ``SagaRun.record`` is the
latest version, stored or advanced, so a failure handler saves on top of it (carrying the advanced
progress) without a self-inflicted version conflict.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from domain.billing import (
    MAX_EMAIL_CHARS,
    DraftInvoice,
    InvoiceItem,
    NewCustomer,
    customer_search_query,
    stripe_email,
)
from domain.crm import Contact
from domain.errors import PermanentError, Reason, excerpt
from domain.events import AmountLineItem, LineItem, PaymentLinkRequested, Step
from domain.intake import due_timestamp, resolve_due_date
from domain.keys import customer_key
from domain.saga_history import HistoryEntry
from domain.saga_record import SagaRecord
from domain.saga_run import RunBase, SagaPorts

log = logging.getLogger("paylink.saga")


class SagaRun(RunBase):
    """One pass over a saga record: forward steps, or compensation."""

    def __init__(self, ports: SagaPorts, record: SagaRecord, carried: Sequence[HistoryEntry] = ()) -> None:
        """``carried``: history entries of an earlier pass not stored yet (its transient failures)."""
        super().__init__(ports, record, carried)
        self.request: PaymentLinkRequested = record.request_event()
        self.current_step = first_unfinished_step(record)

    async def forward(self) -> None:
        """Every step not done yet, in order, each repeated until its done-predicate holds."""
        for step in STEPS:
            self.current_step = step.name
            started, ran = self.now(), False
            while not step.done(self.record):
                before = self.record
                self.journal.begin(step.name, self.now())
                with self._ports.steps.step(step.name, self.record.attempt) as span:
                    await step.do(self)
                    span.produced(self.record)
                ran = True
                assert self.record is not before, f"step {step.name} made no progress"
            if ran and self._ports.on_step is not None:  # a skipped (already done) step took no time
                self._ports.on_step(step.name, (self.now() - started).total_seconds())

    def to_undo(self) -> list[SagaStep]:
        """The done steps that have an ``undo``, last step first (empty: nothing to compensate)."""
        return [step for step in reversed(STEPS) if step.undo is not None and step.done(self.record)]

    async def compensate(self) -> bool:
        """The ``undo`` of every done step, last step first. True when there was anything to undo."""
        undone = self.to_undo()
        for step in undone:
            assert step.undo is not None
            with self._ports.steps.step(f"undo {step.name}", self.record.attempt):
                await self.journaled_undo(step.undo(self))
        return bool(undone)

    # --- do ------------------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """validate: resolves the due date once (every retry then sends the same one)."""
        now = self.now()
        due_date = resolve_due_date(self.request, now)
        await self.advance(self.record.with_due_date(due_date, now), due_date=due_date.isoformat())

    async def ensure_customer(self) -> None:
        """customer: finds or creates the Stripe customer of the contact, then links it in the CRM.

        A contact without an email Stripe can take fails first, before any Stripe call (ADR 0014): Stripe
        refuses a ``send_invoice`` invoice to a customer without one. The check holds for a contact already
        linked to a customer too: paylink knows the contact's email, not the customer's, and one rule on CRM
        data is one the CRM can check and fix on its own.
        """
        stripe_account = await self._connected_account()
        contact = await self._contact()
        email = self._email_of(contact)
        linked = contact.stripe_customers.get(stripe_account)
        if linked is None:
            customer_id = await self._find_or_create_customer(stripe_account, contact, email)
            linked = await self._ports.crm.link_customer(
                self.request.account_id, self.request.contact_id, stripe_account, customer_id
            )
            if linked != customer_id:
                log.info("another customer was linked first; using it", extra=self._log_context())
        description = self._invoice_description(contact, email)
        record = self.record.with_customer(stripe_account, description, linked, self.now())
        await self.advance(record, stripe_account=stripe_account, customer_id=linked)

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

    def _email_of(self, contact: Contact) -> str:
        email = stripe_email(contact)
        if email is not None:
            return email
        whose = f"contact {excerpt(contact.id)} of account {excerpt(self.request.account_id)}"
        if contact.email is None:
            problem = "has no email, which Stripe needs to invoice the customer: add an email to the contact"
        else:
            problem = (
                f"has an email of {len(contact.email)} characters, more than Stripe's {MAX_EMAIL_CHARS}: "
                "correct the contact's email"
            )
        raise PermanentError(Reason.CONTACT_MISSING_EMAIL, f"{whose} {problem}, then request the link again")

    async def _find_or_create_customer(self, stripe_account: str, contact: Contact, email: str) -> str:
        billing = self._ports.billing
        query = customer_search_query(email, contact.phone)
        assert query is not None  # an email always makes a query
        found = await billing.search_customers(stripe_account, query)
        if found:
            return found[0]
        customer = NewCustomer.from_contact(contact)
        key = customer_key(stripe_account, contact.account_id, contact.id, customer.stripe_params())
        return await billing.create_customer(stripe_account, customer, key)

    def _invoice_description(self, contact: Contact, email: str) -> str:
        if self.request.description:
            return self.request.description
        return excerpt(f"Payment requested from {contact.display_name or email}", 500)

    async def create_draft(self) -> None:
        """draft: the draft invoice, under the request's draft idempotency key."""
        record = self.record
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
        await self.advance(record.with_draft(invoice_id, self.now()), invoice_id=invoice_id)

    async def add_items(self) -> None:
        """items: the next ``items_per_call`` line items not yet on the draft, in one call."""
        record, lines = self.record, self.request.line_items
        start = record.items_added
        stop = min(start + max(1, self._ports.items_per_call), len(lines))
        batch = [self._invoice_item(index, lines[index]) for index in range(start, stop)]
        assert record.stripe_account and record.invoice_id
        await self._ports.billing.add_invoice_items(
            record.stripe_account, record.invoice_id, batch, record.keys.items(start, stop)
        )
        await self.advance(record.with_items_added(stop, self.now()), items=f"{start}..{stop - 1}")

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
        """finalise: finalises the draft (``auto_advance=false``); it must come back with a hosted URL."""
        record = self.record
        assert record.stripe_account and record.invoice_id
        invoice = await self._ports.billing.finalize_invoice(
            record.stripe_account, record.invoice_id, record.keys.finalise()
        )
        if not invoice.hosted_invoice_url:
            raise PermanentError(Reason.STRIPE_INVALID_REQUEST, "Stripe finalised the invoice without a hosted URL")
        ids = {"invoice_number": invoice.number} if invoice.number else {}
        self.advance_unsaved(record.with_finalised(invoice, self.now()), **ids)  # saved with the result

    async def shorten(self) -> None:
        """shorten: a short URL for the hosted invoice; never fails the saga (None: the long URL is used)."""
        assert self.record.invoice is not None and self.record.invoice.hosted_invoice_url
        try:
            short_url = await self._ports.shortener.shorten(self.record.invoice.hosted_invoice_url)
        except Exception:
            # The port promises not to raise; a broken adapter still must not fail a finalised invoice.
            log.warning("shortener raised; using the long URL", exc_info=True, extra=self._log_context())
            short_url = None
        ids = {"short_url": short_url} if short_url else {}
        self.advance_unsaved(
            self.record.with_short_url(short_url, self.now()), **ids
        )  # saved with the result (ADR 0016)

    # --- undo ----------------------------------------------------------------------------------------------

    async def undo_invoice(self) -> None:
        """Undoes the draft step: deletes the draft, or voids it once finalised (already gone counts as
        done). A paid invoice cannot be undone: ``PermanentError``."""
        stripe_account, invoice_id = self.record.stripe_account, self.record.invoice_id
        assert stripe_account is not None and invoice_id is not None
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

    def _log_context(self) -> dict[str, str]:
        return {"payment_link_id": self.record.payment_link_id, "step": str(self.current_step)}


@dataclass(frozen=True)
class SagaStep:
    """One row of the saga: ``done`` says the record already holds the step's outcome; ``do`` makes
    progress towards it and saves it; ``undo`` (None: nothing to undo) reverses a done step."""

    name: Step
    done: Callable[[SagaRecord], bool]
    do: Callable[[SagaRun], Awaitable[None]]
    undo: Callable[[SagaRun], Awaitable[None]] | None


# No undo: the customer is kept (linked in the CRM, reused by the contact's next request); the items go
# with the draft; a finalised invoice is voided by the draft's undo (it asks Stripe the invoice's state).
# fmt: off
STEPS: tuple[SagaStep, ...] = (
    #        name           done                                     do                       undo
    SagaStep(Step.VALIDATE, lambda r: r.due_date is not None,        SagaRun.prepare,         None),
    SagaStep(Step.CUSTOMER, lambda r: r.customer_id is not None,     SagaRun.ensure_customer, None),
    SagaStep(Step.DRAFT,    lambda r: r.invoice_id is not None,      SagaRun.create_draft,    SagaRun.undo_invoice),
    SagaStep(Step.ITEMS,    lambda r: r.items_added >= r.line_count, SagaRun.add_items,       None),
    SagaStep(Step.FINALISE, lambda r: r.invoice is not None,         SagaRun.finalise,        None),
    SagaStep(Step.SHORTEN,  lambda r: r.shortened,                   SagaRun.shorten,         None),
)
# fmt: on


def first_unfinished_step(record: SagaRecord) -> Step:
    """The first step whose outcome the record does not hold yet; ``shorten`` once every step is done."""
    return next((step.name for step in STEPS if not step.done(record)), STEPS[-1].name)
