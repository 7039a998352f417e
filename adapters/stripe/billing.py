"""The ``Billing`` port on Stripe, through stripe-python's async ``StripeClient``.

- One ``StripeClient`` per process, over an injected HTTP session (connection pooling, and tests can
  point it anywhere); the connected account travels per request as ``Stripe-Account``. The worker
  passes an ``aiohttp.ClientSession``: httpx's pool (httpcore) scans every pooled connection, with a
  socket check each, on every request and every response, which at 128 concurrent calls cost 14 ms of
  CPU per call (62 calls/s at 200 ms latency, against 548 with aiohttp; tests/benchmarks). An
  ``httpx.AsyncClient`` is still accepted (tests, tools).
- stripe-python's own retries are off (``max_network_retries=0``): the worker owns the retry policy,
  and a hidden second layer would multiply attempts and hide faults from metrics.
- A rate limiter per connected account (``AccountRateLimiter``) spaces requests below Stripe's limit.
  A 429 surfaces as a ``RetryableError``; with ``Retry-After`` it pauses the whole account that long
  and carries the hint, which the worker's backoff honours. Without it the account's pacing is kept
  (the 429 came from jitter around the limit: pausing would only give away more slots) and the
  request alone backs off and retries, and the account's rolling second gets 10 ms more slack
  (``AccountRateLimiter.widen``).
- Line items go in as few calls as the parameters allow: a run of lines that ``add_lines`` can express
  exactly (a price with a quantity, or an amount with quantity 1) is one ``POST
  /v1/invoices/{id}/add_lines`` (all or nothing, keyed by the batch key); any other line (an amount
  with a quantity > 1, which needs ``unit_amount_decimal`` and only ``/v1/invoiceitems`` takes it) and
  a run of one are one ``POST /v1/invoiceitems`` each, keyed by the line's own key.
- The five calls of every saga (customer search and create, draft, add lines, finalise) and the per-item
  ``/v1/invoiceitems`` go through ``StripeClient.raw_request_async``: the same paths, form-encoded
  parameters, headers (``Stripe-Account``, ``Idempotency-Key``, version) and error classes as the
  resource methods, but the answer stays plain JSON, skipping the ``StripeObject`` conversion, which
  was a third of stripe-python's CPU per saga (py-spy, issue 16). So do the two reads of a resumed
  saga (its draft among the customer's, the lines on it: ADR 0018). The rest keep the resource methods.
- ``retrieve_invoice`` maps the invoice with ``adapters.stripe.invoices.snapshot_from_invoice``, the
  function the webhook intake applies to ``event.data.object``.
- Every error becomes the domain's ``RetryableError``/``PermanentError`` (``adapters.stripe.errors``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import quote_plus

import aiohttp
import httpx
import stripe

from adapters.stripe.errors import StripeObjectMissing, translate
from adapters.stripe.invoices import snapshot_from_invoice
from adapters.stripe.rate_limit import AccountRateLimiter
from domain.billing import DraftInvoice, FinalizedInvoice, InvoiceItem, InvoiceStatus, NewCustomer
from domain.errors import PermanentError, RetryableError
from domain.lifecycle import InvoiceSnapshot

T = TypeVar("T")
Observer = Callable[[str, str, float], None]  # endpoint, status, seconds


class InjectedHTTPXClient(stripe.HTTPXClient):
    """stripe-python's httpx transport, over a caller-owned ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self._client_async = client


class SessionAIOHTTPClient(stripe.AIOHTTPClient):
    """stripe-python's aiohttp transport over a caller-owned session.

    stripe-python reads the response body outside its error handling; a connection lost or a timeout
    while reading it is a network error too (``APIConnectionError``), like one before the headers.
    """

    def __init__(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        super().__init__(timeout=aiohttp.ClientTimeout(total=timeout_s), session=session)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            return await super().request_async(method, url, headers, post_data)
        except (aiohttp.ClientError, TimeoutError) as error:
            self._handle_request_error(error)


def make_stripe_session(
    max_connections: int, middlewares: Sequence[aiohttp.ClientMiddlewareType] = ()
) -> aiohttp.ClientSession:
    """The HTTP session for ``make_stripe_client`` (the caller closes it); ``middlewares``: tracing's."""
    tls = ssl.create_default_context(cafile=stripe.ca_bundle_path)
    connector = aiohttp.TCPConnector(limit=max_connections, ssl=tls)
    return aiohttp.ClientSession(connector=connector, middlewares=tuple(middlewares))


def make_stripe_client(
    http: httpx.AsyncClient | aiohttp.ClientSession, api_key: str, api_base: str, timeout_s: float = 10.0
) -> stripe.StripeClient:
    transport: stripe.HTTPClient = (
        SessionAIOHTTPClient(http, timeout_s)
        if isinstance(http, aiohttp.ClientSession)
        else InjectedHTTPXClient(http, timeout_s)
    )
    return stripe.StripeClient(
        api_key,
        http_client=transport,
        base_addresses={"api": api_base},
        max_network_retries=0,
    )


class StripeBilling:
    def __init__(
        self, client: stripe.StripeClient, limiter: AccountRateLimiter, observe: Observer | None = None
    ) -> None:
        self._client = client
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
            translated = translate(error, endpoint)
            hint = translated.retry_after_s if isinstance(translated, RetryableError) else None
            if error.http_status == 429 and hint is not None:
                self._limiter.pause(stripe_account, hint)
            elif error.http_status == 429:
                self._limiter.widen(stripe_account)  # our spacing met Stripe's limit with no slack
            raise translated from error
        finally:
            if self._observe is not None:
                self._observe(endpoint, status, time.perf_counter() - started)

    async def _raw(
        self, endpoint: str, stripe_account: str, method: str, path: str, params: Mapping[str, Any], key: str | None
    ) -> dict[str, Any]:
        """One API request through stripe-python's requestor, answered as plain JSON (see the module)."""
        options: dict[str, Any] = {"stripe_account": stripe_account}
        if key is not None:
            options["idempotency_key"] = key
        response = await self._call(
            endpoint, stripe_account, lambda: self._client.raw_request_async(method, path, **params, **options)
        )
        return cast(dict[str, Any], response.data)

    async def search_customers(self, stripe_account: str, query: str) -> list[str]:
        params = {"query": query, "limit": 10}
        found = await self._raw("customers.search", stripe_account, "get", "/v1/customers/search", params, None)
        return [str(customer["id"]) for customer in found["data"]]

    async def create_customer(self, stripe_account: str, customer: NewCustomer, idempotency_key: str) -> str:
        params = customer.stripe_params()
        created = await self._raw("customers.create", stripe_account, "post", "/v1/customers", params, idempotency_key)
        return str(created["id"])

    async def create_draft_invoice(self, stripe_account: str, draft: DraftInvoice, idempotency_key: str) -> str:
        params = draft.stripe_params()
        created = await self._raw("invoices.create", stripe_account, "post", "/v1/invoices", params, idempotency_key)
        return str(created["id"])

    async def add_invoice_items(
        self, stripe_account: str, invoice_id: str, items: Sequence[InvoiceItem], idempotency_key: str
    ) -> None:
        # In order; a batch interrupted half-way is re-sent whole with the same keys, and Stripe answers
        # the finished calls from its idempotency cache.
        runs = _runs(items)
        for run in runs:
            if len(run) == 1:
                await self._add_item(stripe_account, invoice_id, run[0])
                continue
            key = idempotency_key if len(runs) == 1 else f"{idempotency_key}-{run[0].index}-{run[-1].index + 1}"
            params = {"lines": [_bulk_line(item, invoice_id) for item in run]}
            path = f"/v1/invoices/{_path_id(invoice_id)}/add_lines"
            await self._raw("invoices.add_lines", stripe_account, "post", path, params, key)

    async def _add_item(self, stripe_account: str, invoice_id: str, item: InvoiceItem) -> None:
        params = item.stripe_params(invoice_id)
        await self._raw("invoiceitems.create", stripe_account, "post", "/v1/invoiceitems", params, item.idempotency_key)

    async def find_draft_invoice(self, stripe_account: str, customer_id: str, payment_link_id: str) -> str | None:
        params = {"customer": customer_id, "status": "draft", "limit": 100}
        page = await self._raw("invoices.list", stripe_account, "get", "/v1/invoices", params, None)
        for invoice in page["data"]:  # newest first
            if (invoice.get("metadata") or {}).get("payment_link_id") == payment_link_id:
                return str(invoice["id"])
        return None

    async def invoice_line_indexes(self, stripe_account: str, invoice_id: str) -> set[int]:
        path = f"/v1/invoices/{_path_id(invoice_id)}/lines"
        indexes: set[int] = set()
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = await self._raw("invoices.lines", stripe_account, "get", path, params, None)
            for line in page["data"]:
                index = str((line.get("metadata") or {}).get("line_index", ""))
                if index.isdigit():
                    indexes.add(int(index))
            if not page.get("has_more") or not page["data"]:
                return indexes
            params = {"limit": 100, "starting_after": page["data"][-1]["id"]}

    async def finalize_invoice(self, stripe_account: str, invoice_id: str, idempotency_key: str) -> FinalizedInvoice:
        path = f"/v1/invoices/{_path_id(invoice_id)}/finalize"
        try:
            invoice = await self._raw(
                "invoices.finalize", stripe_account, "post", path, {"auto_advance": False}, idempotency_key
            )
        except PermanentError:
            # Already finalised (e.g. the key expired after a long pause): its current state is the answer.
            current = await self._retrieve(stripe_account, invoice_id)
            if current is None or current.status in (None, "draft"):
                raise
            return _finalized(current)
        return _finalized_json(invoice)

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

    async def retrieve_invoice(self, stripe_account: str, invoice_id: str) -> InvoiceSnapshot | None:
        invoice = await self._retrieve(stripe_account, invoice_id)
        return None if invoice is None else snapshot_from_invoice(invoice)

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


def _bulkable(item: InvoiceItem) -> bool:
    """Whether an ``add_lines`` line can show exactly what ``item.stripe_params`` would."""
    return item.price_id is not None or item.quantity == 1


def _runs(items: Sequence[InvoiceItem]) -> list[list[InvoiceItem]]:
    """Consecutive bulkable items grouped; every other item alone."""
    runs: list[list[InvoiceItem]] = []
    for item in items:
        if _bulkable(item) and runs and _bulkable(runs[-1][-1]):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _bulk_line(item: InvoiceItem, invoice_id: str) -> dict[str, Any]:
    """The ``add_lines`` line for a bulkable item, from the item's own ``/v1/invoiceitems`` parameters:
    ``pricing`` + ``quantity`` as they are; an amount line (quantity 1) as ``amount`` + ``description``
    (its unit amount is its total; the currency is the invoice's, which the draft was created with)."""
    params = item.stripe_params(invoice_id)
    line: dict[str, Any] = {"metadata": params["metadata"]}
    if "pricing" in params:
        line["pricing"] = params["pricing"]
        line["quantity"] = params["quantity"]
    else:
        line["amount"] = int(params["unit_amount_decimal"])
        if params.get("description") is not None:
            line["description"] = params["description"]
    return line


def _post(stripe_account: str, idempotency_key: str) -> stripe.RequestOptions:
    return {"stripe_account": stripe_account, "idempotency_key": idempotency_key}


def _path_id(object_id: str) -> str:
    # As stripe-python's resource methods do (sanitize_id): an id goes into the path URL-quoted.
    return quote_plus(object_id)


def _finalized_json(invoice: Mapping[str, Any]) -> FinalizedInvoice:
    return FinalizedInvoice(
        id=invoice["id"],
        number=invoice.get("number"),
        status=invoice["status"],
        amount_due=invoice["amount_due"],
        currency=invoice["currency"],
        hosted_invoice_url=invoice.get("hosted_invoice_url"),
        invoice_pdf=invoice.get("invoice_pdf"),
        due_date=invoice.get("due_date"),
    )


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
