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
(``domain.saga_record``). Only ``draft`` saves it before the next step starts (ADRs 0016, 0018): the
draft's id is what a resume must never lose. The others only ``advance`` the record, and their outcome
rides with the next save: ``customer`` with the draft's, ``items``, ``finalise`` and ``shorten`` with
the result. A resumed pass (``SagaRun.resumed``: the saga was not inserted by this pass) asks Stripe what
an earlier pass did without recording it, so that repeating a step duplicates nothing even after
Stripe forgot its keys: the draft of this link on the customer (``Billing.find_draft_invoice``) before
creating one, and the lines already on the draft (``Billing.invoice_line_indexes``) before adding any.
``SagaRun.record`` is the latest version, stored or advanced, so a failure handler saves on top of it
(carrying the advanced progress) without a self-inflicted version conflict.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from domain.billing import DraftInvoice, InvoiceItem
from domain.errors import PermanentError, Reason
from domain.events import AmountLineItem, LineItem, PaymentLinkRequested, Step
from domain.intake import due_timestamp, resolve_due_date
from domain.saga_customer import (
    connected_account,
    contact_of,
    email_of,
    find_or_create_customer,
    invoice_description,
)
from domain.saga_history import EntryKind, HistoryEntry
from domain.saga_record import SagaRecord
from domain.saga_run import RunBase, SagaPorts

log = logging.getLogger("paylink.saga")


class SagaRun(RunBase):
    """One pass over a saga record: forward steps, or compensation."""

    def __init__(
        self, ports: SagaPorts, record: SagaRecord, carried: Sequence[HistoryEntry] = (), *, resumed: bool = True
    ) -> None:
        """``carried``: history entries of an earlier pass not stored yet (its transient failures).
        ``resumed``: an earlier pass may have acted without recording it (False only for the pass that
        inserted the saga: nothing can have happened before it)."""
        super().__init__(ports, record, carried)
        self.resumed = resumed
        self._lines_known = not resumed  # a resumed pass reads the draft's lines once before adding any
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
        crm, request = self._ports.crm, self.request
        stripe_account = await connected_account(crm, request)
        contact = await contact_of(crm, request)
        email = email_of(contact, request)
        linked = contact.stripe_customers.get(stripe_account)
        if linked is None:
            customer_id = await find_or_create_customer(self._ports.billing, stripe_account, contact, email)
            linked = await self._ports.crm.link_customer(
                self.request.account_id, self.request.contact_id, stripe_account, customer_id
            )
            if linked != customer_id:
                log.info("another customer was linked first; using it", extra=self._log_context())
        description = invoice_description(request, contact, email)
        record = self.record.with_customer(stripe_account, description, linked, self.now())
        # Saved with the draft: a repeat finds the same customer (the CRM link, written above, is never
        # overwritten), and a resumed draft step adopts the draft an earlier pass made (ADR 0018).
        self.advance_unsaved(record, stripe_account=stripe_account, customer_id=linked)

    async def create_draft(self) -> None:
        """draft: the draft invoice, under the request's draft idempotency key; a resumed pass first adopts
        the draft an earlier pass created for this link (its parameters may have been other ones: the
        contact renamed meanwhile, or the key forgotten after 24 hours)."""
        record = self.record
        assert record.due_date is not None and record.customer_id and record.stripe_account and record.description
        if self.resumed:
            found = await self._ports.billing.find_draft_invoice(
                record.stripe_account, record.customer_id, record.payment_link_id
            )
            if found is not None:
                await self.advance(record.with_draft(found, self.now()), invoice_id=found, adopted="true")
                return
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
        """items: the next ``items_per_call`` line items not yet on the draft, in one call. Lines go on in
        request order, so those an earlier pass added are the first ones: a resumed pass skips them."""
        if not self._lines_known:
            self._lines_known = True
            if await self._skip_lines_on_the_draft():
                return
        record, lines = self.record, self.request.line_items
        start = record.items_added
        stop = min(start + max(1, self._ports.items_per_call), len(lines))
        batch = [self._invoice_item(index, lines[index]) for index in range(start, stop)]
        assert record.stripe_account and record.invoice_id
        await self._ports.billing.add_invoice_items(
            record.stripe_account, record.invoice_id, batch, record.keys.items(start, stop)
        )
        self.advance_unsaved(record.with_items_added(stop, self.now()), items=f"{start}..{stop - 1}")

    async def _skip_lines_on_the_draft(self) -> bool:
        """Advances past the request's first lines already on the draft; True when there were any new."""
        record = self.record
        assert record.stripe_account and record.invoice_id
        present = await self._ports.billing.invoice_line_indexes(record.stripe_account, record.invoice_id)
        on_draft = next(index for index in range(record.line_count + 1) if index not in present)
        if on_draft <= record.items_added:
            return False
        self.advance_unsaved(record.with_items_added(on_draft, self.now()), items=f"0..{on_draft - 1} found")
        return True

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
    progress towards it (saved or advanced); ``undo`` (None: nothing to undo) reverses a done step."""

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


def last_retried_step(entries: Sequence[HistoryEntry]) -> Step | None:
    """The forward step of the newest ``retry`` entry among ``entries`` (None: no forward step was retried)."""
    forward = {step.name.value for step in STEPS}
    retried = [entry.step for entry in entries if entry.kind is EntryKind.RETRY and entry.step in forward]
    return Step(retried[-1]) if retried else None
