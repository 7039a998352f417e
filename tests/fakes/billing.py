"""An in-memory Stripe for the ``Billing`` port: stateful, idempotent, strict, and breakable on demand.

- every POST needs an idempotency key (1..255 characters) and honours it like Stripe: the same key with the
  same parameters returns the first result, with other parameters fails (``stripe_invalid_request``);
  errors are not remembered. ``keys_used`` records (call, key) of every POST;
- ``add_invoice_items`` posts like ``StripeBilling``: a run of lines ``add_lines`` can express (a price, or an
  amount with quantity 1) is one ``add_lines`` POST keyed by the batch key (all or nothing; several runs:
  ``<key>-<first>-<stop>``), any other line one ``add_invoice_item`` POST keyed by the item's own key;
- a draft (``send_invoice``) for a customer without an email is refused ("Missing email"), as Stripe does;
- objects live on one connected account: another account's invoice is "No such invoice" (a delete of it is
  the "already gone" no-op the port allows, and changes nothing); an item's ``customer`` must be its
  invoice's customer, and its ``metadata.line_index`` (paylink's own contract) the request line's index;
- ``hosted_urls = False`` makes finalised invoices come back without a hosted URL;
- ``created`` counts objects really created (customers, invoices, invoice items): a replayed POST
  does not count, so "nothing was created twice" is ``created`` equal to a clean run's;
- ``faults.add(call, error, times=1|N|None, after_effect=False)`` fails a call before it acts, or
  after (``after_effect=True``: the effect happens but the caller sees the error, a lost response).
  Calls: the port's method names, plus ``add_invoice_item`` (each line: its own POST, or within an
  ``add_lines`` batch before anything is added) and ``add_lines``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from domain.billing import DraftInvoice, FinalizedInvoice, InvoiceItem, InvoiceStatus, NewCustomer
from domain.errors import PermanentError, Reason
from domain.lifecycle import InvoiceSnapshot
from domain.ports import Clock
from tests.fakes import stripe_rules
from tests.fakes.faults import FaultPlan

T = TypeVar("T")
_CLAUSE = re.compile(r'(\w+):"((?:[^"\\]|\\.)*)"')


@dataclass
class FakeInvoice:
    id: str
    stripe_account: str
    params: dict[str, Any]
    status: InvoiceStatus = "draft"
    items: list[dict[str, Any]] = field(default_factory=list)
    number: str | None = None


class FakeBilling:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.faults = FaultPlan()
        self.created: Counter[str] = Counter()
        self.calls: list[str] = []
        self.keys_used: list[tuple[str, str]] = []
        self.customers: dict[str, dict[str, Any]] = {}  # id → params (+ "stripe_account")
        self.invoices: dict[str, FakeInvoice] = {}
        self.prices: dict[tuple[str, str], tuple[int, str]] = {}  # (account, price id) → (unit, currency)
        self._idempotent: dict[tuple[str, str], tuple[str, Any]] = {}
        self._sequence = 0
        self.hosted_urls = True

    # --- test setup and inspection -------------------------------------------------------------

    def add_price(self, stripe_account: str, price_id: str, unit_amount: int, currency: str) -> None:
        self.prices[(stripe_account, price_id)] = (unit_amount, currency)

    def add_customer(self, stripe_account: str, **params: Any) -> str:
        customer_id = self._new_id("cus")
        self.customers[customer_id] = {**params, "stripe_account": stripe_account}
        return customer_id

    def expire_keys(self) -> None:
        """Forgets every idempotency key, as Stripe does after 24 hours: a keyed POST executes again."""
        self._idempotent.clear()

    def unfinished_invoices(self) -> list[FakeInvoice]:
        """Invoices a failed saga would have left behind (drafts and open invoices)."""
        return [invoice for invoice in self.invoices.values() if invoice.status in ("draft", "open")]

    # --- the Billing port ----------------------------------------------------------------------

    async def search_customers(self, stripe_account: str, query: str) -> list[str]:
        self._enter("search_customers")
        wanted = [(name, _unescape(value)) for name, value in _CLAUSE.findall(query)]
        return [
            customer_id
            for customer_id, params in reversed(self.customers.items())
            if params["stripe_account"] == stripe_account and any(params.get(name) == value for name, value in wanted)
        ]

    async def create_customer(self, stripe_account: str, customer: NewCustomer, idempotency_key: str) -> str:
        params = customer.stripe_params()

        def create() -> str:
            stripe_rules.check_customer(params)
            self.created["customer"] += 1
            return self.add_customer(stripe_account, **params)

        return self._post("create_customer", stripe_account, idempotency_key, params, create)

    async def create_draft_invoice(self, stripe_account: str, draft: DraftInvoice, idempotency_key: str) -> str:
        params = draft.stripe_params()

        def create() -> str:
            stripe_rules.check_draft(params, self._clock.now().timestamp())
            customer = self.customers.get(params["customer"])
            if customer is None or customer["stripe_account"] != stripe_account:
                raise stripe_rules.invalid(f"No such customer: {params['customer']}")
            if not customer.get("email"):  # Stripe: a send_invoice invoice needs a customer with an email
                raise stripe_rules.invalid("Missing email. The customer must have a valid email.")
            invoice = FakeInvoice(self._new_id("in"), stripe_account, params)
            self.invoices[invoice.id] = invoice
            self.created["invoice"] += 1
            return invoice.id

        return self._post("create_draft_invoice", stripe_account, idempotency_key, params, create)

    async def add_invoice_items(
        self, stripe_account: str, invoice_id: str, items: Sequence[InvoiceItem], idempotency_key: str
    ) -> None:
        self.faults.check("add_invoice_items")
        self.calls.append("add_invoice_items")
        _check_key(idempotency_key)
        if not items:
            raise stripe_rules.invalid("lines: at least one line is required")
        runs = _runs(items)
        for run in runs:
            if len(run) == 1:
                params = run[0].stripe_params(invoice_id)
                adder = self._items_adder(stripe_account, [params])
                self._post("add_invoice_item", stripe_account, run[0].idempotency_key, params, adder)
                continue
            key = idempotency_key if len(runs) == 1 else f"{idempotency_key}-{run[0].index}-{run[-1].index + 1}"
            lines = [item.stripe_params(invoice_id) for item in run]
            self._post("add_lines", stripe_account, key, {"lines": lines}, self._items_adder(stripe_account, lines))
        self.faults.check("add_invoice_items", after_effect=True)

    def _items_adder(self, stripe_account: str, lines: list[dict[str, Any]]) -> Callable[[], list[str]]:
        """Adds ``lines`` (each ``InvoiceItem.stripe_params``) all or nothing; faults of ``add_invoice_item``
        fire per line, before anything is added."""

        def add() -> list[str]:
            amounts = []
            for params in lines:
                if len(lines) > 1:
                    self.faults.check("add_invoice_item")
                amounts.append(self._checked_amount(stripe_account, params))
            added = []
            for params, amount in zip(lines, amounts, strict=True):
                invoice = self.invoices[params["invoice"]]
                item_id = self._new_id("ii")
                invoice.items.append({**params, "id": item_id, "amount": amount})
                self.created["invoice_item"] += 1
                added.append(item_id)
            return added

        return add

    def _checked_amount(self, stripe_account: str, params: dict[str, Any]) -> int:
        stripe_rules.check_item(params)
        invoice = self.invoices.get(params["invoice"])
        if invoice is None or invoice.stripe_account != stripe_account:
            raise stripe_rules.invalid(f"No such invoice: {params['invoice']}")
        if invoice.status != "draft":
            raise stripe_rules.invalid("invoice items can only be added to a draft invoice")
        if params["customer"] != invoice.params["customer"]:
            raise stripe_rules.invalid("The invoice item's customer must be the invoice's customer.")
        unit, currency = self._unit_price(invoice, params)
        if currency != invoice.params["currency"]:
            raise stripe_rules.invalid("the price's currency differs from the invoice's")
        if len(invoice.items) >= stripe_rules.MAX_INVOICE_LINES:
            raise stripe_rules.invalid("at most 250 invoice items")
        return unit * int(params["quantity"])

    def _unit_price(self, invoice: FakeInvoice, params: dict[str, Any]) -> tuple[int, str]:
        if "pricing" in params:
            price = self.prices.get((invoice.stripe_account, params["pricing"]["price"]))
            if price is None:
                raise PermanentError(Reason.PRICE_NOT_FOUND, f"No such price: {params['pricing']['price']}")
            return price
        return int(params["unit_amount_decimal"]), params["currency"]

    async def find_draft_invoice(self, stripe_account: str, customer_id: str, payment_link_id: str) -> str | None:
        self._enter("find_draft_invoice")
        drafts = [
            invoice
            for invoice in self.invoices.values()
            if invoice.stripe_account == stripe_account
            and invoice.params["customer"] == customer_id
            and invoice.status == "draft"
        ]
        newest = list(reversed(drafts))[:100]  # Stripe lists newest first, 100 at most per page
        return next(
            (i.id for i in newest if i.params.get("metadata", {}).get("payment_link_id") == payment_link_id), None
        )

    async def invoice_line_indexes(self, stripe_account: str, invoice_id: str) -> set[int]:
        self._enter("invoice_line_indexes")
        invoice = self._invoice(stripe_account, invoice_id)
        return {
            int(item["metadata"]["line_index"]) for item in invoice.items if "line_index" in item.get("metadata", {})
        }

    async def finalize_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> FinalizedInvoice:
        def finalize() -> FinalizedInvoice:
            invoice = self._invoice(stripe_account, invoice_id)
            if invoice.status == "draft":
                self._sequence += 1
                invoice.number = f"INV-{self._sequence:04d}"
                invoice.status = "open" if self._amount_due(invoice) > 0 else "paid"
            return self._finalized(invoice)

        return self._post("finalize_invoice", stripe_account, idempotency_key, {"auto_advance": False}, finalize)

    async def invoice_status(self, stripe_account: str, invoice_id: str) -> InvoiceStatus | None:
        self._enter("invoice_status")
        invoice = self._on_account(stripe_account, invoice_id)
        return None if invoice is None else invoice.status

    async def retrieve_invoice(self, stripe_account: str, invoice_id: str) -> InvoiceSnapshot | None:
        """The invoice as Stripe shows it (no transition times: this fake does not keep them)."""
        self._enter("retrieve_invoice")
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.stripe_account != stripe_account:
            return None
        due = invoice.params.get("due_date")
        amount = self._amount_due(invoice)
        return InvoiceSnapshot(
            invoice_id=invoice.id,
            status=invoice.status,
            payment_link_id=invoice.params.get("metadata", {}).get("payment_link_id"),
            amount_paid=amount if invoice.status == "paid" else 0,
            amount_remaining=amount if invoice.status in ("draft", "open", "uncollectible") else 0,
            currency=invoice.params["currency"],
            due_date=datetime.fromtimestamp(due, UTC).date() if due is not None else None,
        )

    async def delete_draft(self, stripe_account: str, invoice_id: str) -> None:
        self._enter("delete_draft")
        invoice = self._on_account(stripe_account, invoice_id)
        if invoice is None:
            return  # Stripe: "No such invoice" (another account's too), which the port treats as already gone
        if invoice.status != "draft":
            raise stripe_rules.invalid("only drafts can be deleted")
        del self.invoices[invoice_id]  # its invoice items go with it
        self.faults.check("delete_draft", after_effect=True)

    async def void_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        def void() -> None:
            invoice = self._invoice(stripe_account, invoice_id)
            if invoice.status not in ("open", "uncollectible", "void"):
                raise stripe_rules.invalid(f"cannot void a {invoice.status} invoice")
            invoice.status = "void"

        self._post("void_invoice", stripe_account, idempotency_key, {}, void)

    # --- plumbing --------------------------------------------------------------------------------

    def _enter(self, call: str) -> None:
        self.faults.check(call)
        self.calls.append(call)

    def _post(self, call: str, account: str, key: str, params: dict[str, Any], effect: Callable[[], T]) -> T:
        self._enter(call)
        _check_key(key)
        self.keys_used.append((call, key))
        fingerprint = json.dumps(params, sort_keys=True)
        remembered = self._idempotent.get((account, key))
        if remembered is not None:
            if remembered[0] != fingerprint:
                raise stripe_rules.invalid(f"idempotency key {key} reused with different parameters")
            result: T = remembered[1]
        else:
            result = effect()
            self._idempotent[(account, key)] = (fingerprint, result)
        self.faults.check(call, after_effect=True)
        return result

    def _on_account(self, stripe_account: str, invoice_id: str) -> FakeInvoice | None:
        invoice = self.invoices.get(invoice_id)
        return invoice if invoice is not None and invoice.stripe_account == stripe_account else None

    def _invoice(self, stripe_account: str, invoice_id: str) -> FakeInvoice:
        invoice = self._on_account(stripe_account, invoice_id)
        if invoice is None:
            raise stripe_rules.invalid(f"No such invoice: {invoice_id}")
        return invoice

    @staticmethod
    def _amount_due(invoice: FakeInvoice) -> int:
        return sum(item["amount"] for item in invoice.items)

    def _finalized(self, invoice: FakeInvoice) -> FinalizedInvoice:
        return FinalizedInvoice(
            id=invoice.id,
            number=invoice.number,
            status=invoice.status,
            amount_due=self._amount_due(invoice),
            currency=invoice.params["currency"],
            hosted_invoice_url=f"https://invoice.stripe.test/{invoice.id}" if self.hosted_urls else None,
            invoice_pdf=f"https://invoice.stripe.test/{invoice.id}/pdf",
            due_date=invoice.params["due_date"],
        )

    def _new_id(self, prefix: str) -> str:
        self._sequence += 1
        return f"{prefix}_{self._sequence:06d}"


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= stripe_rules.MAX_IDEMPOTENCY_KEY_CHARS:
        raise stripe_rules.invalid(f"Invalid idempotency key: {key!r}")


def _bulkable(item: InvoiceItem) -> bool:
    return item.price_id is not None or item.quantity == 1


def _runs(items: Sequence[InvoiceItem]) -> list[list[InvoiceItem]]:
    """Consecutive lines ``add_lines`` can express grouped; every other line alone (as ``StripeBilling``)."""
    runs: list[list[InvoiceItem]] = []
    for item in items:
        if _bulkable(item) and runs and _bulkable(runs[-1][-1]):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)
