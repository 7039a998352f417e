"""Stateful Stripe API emulator (in memory) for paylink's local stack, tests and benchmarks.

Run from the repository root: ``python -m deploy.local.emulators.stripe_emulator --host 127.0.0.1 --port 12111``

Speaks enough of ``/v1`` for stripe-python 16 (form-encoded bodies, ``Stripe-Account`` scoping,
``Idempotency-Key``): products, prices, customers (+ list by email, search), invoices (+ finalize, pay,
void, mark_uncollectible, delete, add_lines, lines), invoice items, payment intents (retrieve), events,
webhook endpoints, and signed webhook deliveries (:mod:`.stripe_delivery`). See :mod:`.control` for the
``/_emulator`` control API and :mod:`.stripe_control` for this emulator's own calls (objects, clock, hosted
page payments, deliveries and their faults); its config keys add ``revoked_accounts`` (list of ``acct_…``
answered with Stripe's 403), ``search_visibility_delay_ms`` (new customers stay out of search results that
long, like Stripe's eventually consistent search; default 0), ``webhook_retry_delays_s`` and
``webhook_timeout_s``.

Request pipeline: config latency -> auth (401) -> revoked/invalid account (403) -> per-account rate limit
(429, nothing executes) -> faults ``phase=before`` -> idempotency replay/conflict -> execution (its
result, success or error, is saved under ``(account, Idempotency-Key)`` unless it failed parameter
validation) -> faults ``phase=after``.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from . import stripe_store as st
from .control import ControlPlane
from .control_http import ResettableApp, control_routes, serve
from .faults import ControlError, Fault
from .stripe_control import stripe_control_routes
from .stripe_delivery import DEFAULT_DELAYS_S, Deliverer, validate_delays, validate_timeout
from .stripe_events import publish
from .stripe_params import Params, StripeError, parse_form
from .stripe_routes import ROUTES, Ctx, Handler

_ID_SEGMENT = re.compile(r"(?<=/)(cus|in|ii|il|price|prod|acct|evt|we|pi)_[^/]+")
LOCK_MESSAGE = (
    "This object cannot be accessed right now because another API request or Stripe process is currently "
    "accessing it. If you see this error intermittently, retry the request. If you see this error "
    "frequently and are making multiple concurrent requests to a single object, make your requests "
    "serially or at a lower rate."
)
RATE_MESSAGE = "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
SERVER_MESSAGE = (
    "Sorry, something went wrong. We've already been notified of the problem, but if you need any help, you "
    "can reach us at https://support.stripe.com/contact."
)


def normalize_path(path: str) -> str:
    return _ID_SEGMENT.sub("{id}", path)


def _redact(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else key


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    hdrs = {"Request-Id": _request_id()}
    hdrs.update(headers or {})
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=hdrs)


def _request_id() -> str:
    return "req_" + "".join(random.choices(string.ascii_letters + string.digits, k=14))


def error_response(err: StripeError) -> Response:
    return _json(err.status, err.body(), err.headers)


def fault_error(status: int, fault: Fault | None) -> Response:
    """The body Stripe sends for an injected status (or the rate limiter's 429)."""
    code = fault.code if fault else None
    retry: bool | None = None
    if status == 429:
        code = code or "rate_limit"
        message, type_ = (LOCK_MESSAGE if code == "lock_timeout" else RATE_MESSAGE), "invalid_request_error"
        retry = True if code == "lock_timeout" else None
    elif status == 409:
        code, message, type_, retry = code or "lock_timeout", LOCK_MESSAGE, "invalid_request_error", True
    elif status >= 500:
        message, type_, retry = SERVER_MESSAGE, "api_error", True
    elif status == 404:
        code, message, type_ = (
            code or "resource_missing",
            "No such object (injected fault)",
            "invalid_request_error",
        )
    else:
        message, type_ = f"Injected fault: HTTP {status}", "invalid_request_error"
    if fault is not None:
        message = fault.message or message
        retry = fault.should_retry if fault.should_retry is not None else retry
    headers = {} if retry is None else {"Stripe-Should-Retry": "true" if retry else "false"}
    if status == 429 and code == "rate_limit":
        headers["Stripe-Rate-Limited-Reason"] = "global-rate"
    return error_response(StripeError(status, message, type_=type_, code=code, headers=headers))


class StripeEmulator:
    def __init__(self) -> None:
        self.store = st.Store()
        extra: dict[str, Any] = {"revoked_accounts": [], "search_visibility_delay_ms": None}
        extra |= {"webhook_retry_delays_s": list(DEFAULT_DELAYS_S), "webhook_timeout_s": 10.0}
        self.control = ControlPlane("stripe", normalize_path, extra)
        self.control.config_validators["revoked_accounts"] = self._revoked
        self.control.config_validators["search_visibility_delay_ms"] = self._search_delay
        self.control.config_validators["webhook_retry_delays_s"] = validate_delays
        self.control.config_validators["webhook_timeout_s"] = validate_timeout
        self.deliverer = Deliverer(self.store, self.control.config)
        self.control.reset_hooks.append(self._reset_store)

    def _reset_store(self) -> None:
        self.store = st.Store()
        st.CLOCK.offset = 0
        if hasattr(self, "deliverer"):  # reset() runs once inside ControlPlane's constructor
            self.deliverer.reset(self.store)
            self.deliverer.config = self.control.config

    @staticmethod
    def _revoked(value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ControlError("revoked_accounts must be a list of account ids")
        return list(value)

    def _search_delay(self, value: Any) -> int | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ControlError("search_visibility_delay_ms must be an integer >= 0 or null")
        self.store.search_delay_s = (value or 0) / 1000
        return value or None

    # -- the per-request pipeline ----------------------------------------------------------------
    def _reject(self, request: Request, account: str | None) -> Response | None:
        auth = request.headers.get("authorization", "")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                credential = ""
        if not credential:
            return error_response(
                StripeError(
                    401,
                    "You did not provide an API key. You need to provide your API key in the Authorization "
                    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                    "https://stripe.com/docs/api#authentication for details, or we can help at "
                    "https://support.stripe.com/.",
                    headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
                )
            )
        if not credential.startswith("sk_test_"):
            return error_response(
                StripeError(
                    401,
                    f"Invalid API Key provided: {_redact(credential)}",
                    headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
                )
            )
        if account is not None and (
            not account.startswith("acct_") or account in self.control.config["revoked_accounts"]
        ):
            return error_response(
                StripeError(
                    403,
                    f"The provided key '{_redact(credential)}' does not have access to account '{account}' "
                    "(or that account does not exist). Application access may have been revoked.",
                    code="account_invalid",
                )
            )
        return None

    def endpoint(self, handlers: dict[str, Handler]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            method = request.method
            account = request.headers.get("stripe-account") or None
            raw = (await request.body()).decode("utf-8", "replace") if method == "POST" else request.url.query
            handler = handlers.get(method)

            async def execute() -> Response:
                if handler is None:
                    return _unrecognized(method, request.url.path)
                return self._execute(request, handler, account, parse_form(raw))

            return await self.control.run(
                request,
                account=account,
                execute=execute,
                error=fault_error,
                reject=lambda: self._reject(request, account),
            )

        return handle

    def _execute(self, request: Request, handler: Handler, account: str | None, params: Params) -> Response:
        acct = self.store.account(account)
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        fingerprint = (request.method, request.url.path, json.dumps(params, sort_keys=True))
        if key is not None:
            saved = acct.idempotency.get(key)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    return error_response(
                        StripeError(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            f"first used with. Try using a key other than '{key}' if you meant to execute a "
                            "different request.",
                            type_="idempotency_error",
                        )
                    )
                self.control.counters["idempotent_replays"] += 1
                return Response(
                    saved.body,
                    status_code=saved.status,
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true", "Idempotency-Key": key, "Request-Id": _request_id()},
                )
        save = True
        headers: dict[str, str] = {}
        try:
            expand = params.pop("expand", None)
            paths = [expand[k] for k in sorted(expand, key=int)] if isinstance(expand, dict) else []
            result = handler(Ctx(self.store, acct, params, dict(request.path_params), request.url.path))
            status, body = 200, st.expand(acct, result, paths)
        except StripeError as err:
            status, body, save, headers = err.status, err.body(), err.saved, err.headers
        except Exception as exc:  # an emulator bug: answered like Stripe's saved 500
            status, body = 500, StripeError(500, f"{SERVER_MESSAGE} ({exc!r})", type_="api_error").body()
            headers = {"Stripe-Should-Retry": "false"}
        headers["Request-Id"] = _request_id()
        if status == 200:  # events only for what happened; handlers check everything before changing state
            publish(acct, self.deliverer.on_event, headers["Request-Id"], key)
        acct.noted.clear()
        payload = json.dumps(body).encode()
        if key is not None:
            headers["Idempotency-Key"] = key
            if save:
                acct.idempotency[key] = st.Saved(fingerprint, status, payload)
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    def app(self) -> ASGIApp:
        routes = [
            Route(path, self.endpoint(handlers), methods=["GET", "POST", "DELETE"]) for path, handlers in ROUTES.items()
        ]
        control = [*control_routes(self.control), *stripe_control_routes(self)]
        return ResettableApp(Router(routes=[*control, *routes], default=_not_found))


def _unrecognized(method: str, path: str) -> Response:
    return error_response(
        StripeError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help "
            "at https://support.stripe.com/.",
        )
    )


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await _unrecognized(scope.get("method", "GET"), scope.get("path", ""))(scope, receive, send)


def build_app() -> ASGIApp:
    return StripeEmulator().app()


if __name__ == "__main__":
    serve(lambda _args: build_app(), "paylink's stateful Stripe emulator", 12111)
