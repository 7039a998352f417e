"""The Stripe emulator's own control calls (what Stripe's API cannot express), under ``/_emulator``:

==========================================================  ===================================================
``GET  /_emulator/objects?account=&type=``                  stored objects of one account (oldest first)
``GET/POST /_emulator/clock``                               ``{"advance_seconds": N}`` moves the clock forward
``POST /_emulator/idempotency_keys/expire``                 forgets saved keys (``{"account": "acct_…"}`` or all)
``POST /_emulator/invoices/{id}/hosted_payment``            a customer paying on the hosted page (succeeds/fails)
``GET  /_emulator/webhook_deliveries``                      deliveries (``?event=&endpoint=&type=&status=``)
``POST /_emulator/webhook_deliveries/release``              send held deliveries (``{"order": "reverse"}``)
``POST/GET/DELETE /_emulator/webhook_faults[/{id}]``        delivery faults (drop, duplicate, delay, hold)
==========================================================  ===================================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import stripe_invoices as inv
from . import stripe_store as st
from .control_http import read_json
from .faults import ControlError
from .stripe_events import publish
from .stripe_params import StripeError
from .stripe_transitions import hosted_payment

if TYPE_CHECKING:
    from .stripe_emulator import StripeEmulator

HOSTED_KEYS = {"account", "outcome", "failure_message", "failure_code", "decline_code"}


def _error(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def stripe_control_routes(emu: StripeEmulator) -> list[BaseRoute]:
    async def objects(request: Request) -> Response:
        acct = emu.store.account(request.query_params.get("account") or None)
        kind = request.query_params.get("type")
        tables: dict[str, list[st.Obj]] = {
            "product": list(acct.products.values()),
            "price": list(acct.prices.values()),
            "customer": list(acct.customers.values()),
            "invoice": [inv.render_invoice(acct, i) for i in acct.invoices.values()],
            "invoiceitem": list(acct.items.values()),
            "event": list(acct.events.values()),
            "webhook_endpoint": list(acct.webhook_endpoints.values()),
            "payment_intent": list(acct.payment_intents.values()),
        }
        if kind is not None and kind not in tables:
            return _error(f"type must be one of {sorted(tables)}")
        # without a type: the API objects only (events and endpoints are asked for by type)
        data = tables[kind] if kind else [o for k in list(tables)[:5] for o in tables[k]]
        counts = {k: len(v) for k, v in tables.items()}
        body = {"account": acct.id, "type": kind, "data": data, "counts": counts}
        return JSONResponse(body | {"idempotency_keys": len(acct.idempotency)})

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            body = await read_json(request)
            step = body.get("advance_seconds") if isinstance(body, dict) else None
            if set(body if isinstance(body, dict) else {"?"}) - {"advance_seconds"}:
                return _error("the clock takes {'advance_seconds': N}")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                return _error("advance_seconds must be an integer >= 0 (the clock only moves forward)")
            st.CLOCK.offset += step
        return JSONResponse({"now": st.now(), "offset_seconds": st.CLOCK.offset})

    async def expire_keys(request: Request) -> Response:
        # Stripe forgets a key after 24 hours: a request re-sent later executes again. Expiring them on
        # demand lets a test resume a saga "after the keys expired" without moving the clock a day.
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) - {"account"}:
            return _error("expire takes {} or {'account': 'acct_...'}")
        accounts = [emu.store.account(body["account"])] if body.get("account") else list(emu.store.accounts.values())
        expired = sum(len(acct.idempotency) for acct in accounts)
        for acct in accounts:
            acct.idempotency.clear()
        return JSONResponse({"expired": expired})

    async def pay_on_hosted_page(request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) - HOSTED_KEYS:
            return _error(f"a hosted payment is a JSON object with keys among {sorted(HOSTED_KEYS)}")
        outcome = body.get("outcome", "succeeded")
        if outcome not in ("succeeded", "failed"):
            return _error("outcome must be 'succeeded' or 'failed'")
        texts = {k: body.get(k) for k in ("account", "failure_message", "failure_code", "decline_code")}
        if any(v is not None and not isinstance(v, str) for v in texts.values()):
            return _error("account, failure_message, failure_code and decline_code are strings")
        acct = emu.store.account(texts["account"])
        try:
            invoice = hosted_payment(
                acct,
                request.path_params["invoice_id"],
                outcome == "succeeded",
                texts["failure_code"] or "card_declined",
                texts["decline_code"] or "generic_decline",
                texts["failure_message"] or "Your card was declined.",
            )
        except StripeError as err:
            acct.noted.clear()
            return JSONResponse(err.body(), status_code=err.status)
        publish(acct, emu.deliverer.on_event, None, None)
        return JSONResponse(inv.render_invoice(acct, invoice))

    async def deliveries(request: Request) -> Response:
        q = request.query_params
        keys = ("event", "endpoint", "type", "status")
        data = [
            d.public()
            for d in emu.deliverer.deliveries.values()
            if all(q.get(k) is None or d.public()[k] == q[k] for k in keys)
        ]
        return JSONResponse({"data": data, "held": len(emu.deliverer.held)})

    async def release(request: Request) -> Response:
        body = await read_json(request)
        order = body.get("order", "reverse") if isinstance(body, dict) else None
        if order not in ("reverse", "received"):
            return _error("order must be 'reverse' (newest first) or 'received'")
        return JSONResponse({"released": emu.deliverer.release(order == "reverse")})

    async def faults(request: Request) -> Response:
        deliverer = emu.deliverer
        if request.method == "DELETE":
            removed, deliverer.faults = len(deliverer.faults), []
            return JSONResponse({"deleted": removed})
        if request.method == "POST":
            fault = deliverer.add_fault(await read_json(request))
            return JSONResponse(fault.public(), status_code=201)
        return JSONResponse({"data": [f.public() for f in deliverer.faults]})

    async def fault_by_id(request: Request) -> Response:
        fault_id = request.path_params["fault_id"]
        kept = [f for f in emu.deliverer.faults if f.id != fault_id]
        if len(kept) == len(emu.deliverer.faults):
            return _error(f"no delivery fault {fault_id}", 404)
        emu.deliverer.faults = kept
        return JSONResponse({"id": fault_id, "deleted": True})

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ControlError as exc:
                return _error(str(exc))

        return run

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/_emulator/objects", objects, ["GET"]),
        ("/_emulator/clock", clock, ["GET", "POST"]),
        ("/_emulator/idempotency_keys/expire", expire_keys, ["POST"]),
        ("/_emulator/invoices/{invoice_id}/hosted_payment", pay_on_hosted_page, ["POST"]),
        ("/_emulator/webhook_deliveries", deliveries, ["GET"]),
        ("/_emulator/webhook_deliveries/release", release, ["POST"]),
        ("/_emulator/webhook_faults", faults, ["GET", "POST", "DELETE"]),
        ("/_emulator/webhook_faults/{fault_id}", fault_by_id, ["DELETE"]),
    ]
    return [Route(path, guarded(handler), methods=methods) for path, handler, methods in table]
