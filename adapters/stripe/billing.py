"""The ``Billing`` port on Stripe, through stripe-python's async ``StripeClient``.

- One ``StripeClient`` per process, over an injected ``httpx.AsyncClient`` (connection pooling, and
  tests can point it anywhere); the connected account travels per request as ``Stripe-Account``.
- stripe-python's own retries are off (``max_network_retries=0``): the worker owns the retry policy,
  and a hidden second layer would multiply attempts and hide faults from metrics.
- A token bucket per connected account (``AccountRateLimiter``) spaces requests below Stripe's limit.
- Every error becomes the domain's ``RetryableError``/``PermanentError`` (``adapters.stripe.errors``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import httpx
import stripe

from adapters.stripe.errors import StripeObjectMissing, translate
from adapters.stripe.rate_limit import AccountRateLimiter
from domain.billing import DraftInvoice, FinalizedInvoice, InvoiceItem, InvoiceStatus, NewCustomer
from domain.errors import PermanentError

T = TypeVar("T")
Observer = Callable[[str, str, float], None]  # endpoint, status, seconds


class InjectedHTTPXClient(stripe.HTTPXClient):
    """stripe-python's httpx transport, over a caller-owned ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self._client_async = client


def make_stripe_client(
    http: httpx.AsyncClient, api_key: str, api_base: str, timeout_s: float = 10.0
) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        http_client=InjectedHTTPXClient(http, timeout_s),
        base_addresses={"api": api_base},
        max_network_retries=0,
    )


class StripeBilling:
    def __init__(
        self, client: stripe.StripeClient, limiter: AccountRateLimiter, observe: Observer | None = None
    ) -> None:
        self._v1 = client.v1
        self._limiter = limiter
        self._observe = observe

    async def _call(self, endpoint: str, stripe_account: str, request: Callable[[], Awaitable[T]]) -> T:
        await self._limiter.acquire(stripe_account)
        started = time.perf_counter()
        status = "ok"
        try:
            return await request()
        except stripe.StripeError as error:
            status = str(error.http_status or type(error).__name__)
            raise translate(error, endpoint) from error
        finally:
            if self._observe is not None:
                self._observe(endpoint, status, time.perf_counter() - started)

    async def search_customers(self, stripe_account: str, query: str) -> list[str]:
        options: stripe.RequestOptions = {"stripe_account": stripe_account}
        found = await self._call(
            "customers.search",
            stripe_account,
            lambda: self._v1.customers.search_async(params={"query": query, "limit": 10}, options=options),
        )
        return [customer.id for customer in found.data]

    async def create_customer(self, stripe_account: str, customer: NewCustomer, idempotency_key: str) -> str:
        created = await self._call(
            "customers.create",
            stripe_account,
            lambda: self._v1.customers.create_async(
                params=cast(Any, customer.stripe_params()), options=_post(stripe_account, idempotency_key)
            ),
        )
        return created.id

    async def create_draft_invoice(self, stripe_account: str, draft: DraftInvoice, idempotency_key: str) -> str:
        created = await self._call(
            "invoices.create",
            stripe_account,
            lambda: self._v1.invoices.create_async(
                params=cast(Any, draft.stripe_params()), options=_post(stripe_account, idempotency_key)
            ),
        )
        return created.id

    async def add_invoice_items(
        self, stripe_account: str, invoice_id: str, items: Sequence[InvoiceItem], idempotency_key: str
    ) -> None:
        # One call per item, in order, each with its own key: a batch interrupted half-way is re-sent
        # whole and Stripe answers the finished items from its idempotency cache.
        for item in items:
            await self._call(
                "invoiceitems.create",
                stripe_account,
                lambda item=item: self._v1.invoice_items.create_async(  # type: ignore[misc]
                    params=cast(Any, item.stripe_params(invoice_id)),
                    options=_post(stripe_account, item.idempotency_key),
                ),
            )

    async def finalize_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> FinalizedInvoice:
        try:
            invoice = await self._call(
                "invoices.finalize",
                stripe_account,
                lambda: self._v1.invoices.finalize_invoice_async(
                    invoice_id, params={"auto_advance": False}, options=_post(stripe_account, idempotency_key)
                ),
            )
        except PermanentError:
            # Already finalised (e.g. the key expired after a long pause): its current state is the answer.
            current = await self._retrieve(stripe_account, invoice_id)
            if current is None or current.status in (None, "draft"):
                raise
            invoice = current
        return _finalized(invoice)

    async def _retrieve(self, stripe_account: str, invoice_id: str) -> stripe.Invoice | None:
        options: stripe.RequestOptions = {"stripe_account": stripe_account}
        try:
            return await self._call(
                "invoices.retrieve",
                stripe_account,
                lambda: self._v1.invoices.retrieve_async(invoice_id, options=options),
            )
        except StripeObjectMissing:
            return None

    async def invoice_status(self, stripe_account: str, invoice_id: str) -> InvoiceStatus | None:
        invoice = await self._retrieve(stripe_account, invoice_id)
        return None if invoice is None else cast(InvoiceStatus, invoice.status)

    async def delete_draft(self, stripe_account: str, invoice_id: str) -> None:
        options: stripe.RequestOptions = {"stripe_account": stripe_account}
        try:
            await self._call(
                "invoices.delete",
                stripe_account,
                lambda: self._v1.invoices.delete_async(invoice_id, options=options),
            )
        except StripeObjectMissing:
            return  # already gone

    async def void_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> None:
        try:
            await self._call(
                "invoices.void",
                stripe_account,
                lambda: self._v1.invoices.void_invoice_async(
                    invoice_id, options=_post(stripe_account, idempotency_key)
                ),
            )
        except PermanentError:
            if await self.invoice_status(stripe_account, invoice_id) == "void":
                return
            raise


def _post(stripe_account: str, idempotency_key: str) -> stripe.RequestOptions:
    return {"stripe_account": stripe_account, "idempotency_key": idempotency_key}


def _finalized(invoice: stripe.Invoice) -> FinalizedInvoice:
    return FinalizedInvoice(
        id=invoice.id,
        number=invoice.number,
        status=cast(str, invoice.status),
        amount_due=invoice.amount_due,
        currency=invoice.currency,
        hosted_invoice_url=invoice.hosted_invoice_url,
        invoice_pdf=invoice.invoice_pdf,
        due_date=invoice.due_date,
    )
