"""Webhook endpoints: ``POST/GET /v1/webhook_endpoints``, ``GET/POST/DELETE /v1/webhook_endpoints/{id}``.

The endpoint's ``secret`` (``whsec_…``) is answered on creation only, as Stripe does; the emulator keeps
it to sign deliveries. ``enabled_events`` are checked against the event types stripe-python 16 knows
(its generated ``WebhookEndpointCreateParams``), so a misspelt type is refused as Stripe refuses it.

Routing (:func:`endpoints_for`), as Stripe routes: an event of the platform goes to the platform's
endpoints with ``connect=false``; an event of a connected account goes to the platform's ``connect=true``
endpoints and to the connected account's own endpoints (created with its ``Stripe-Account``).
"""

from __future__ import annotations

import random
import string
import typing
from urllib.parse import urlsplit

from stripe.params._webhook_endpoint_create_params import WebhookEndpointCreateParams

from .stripe_params import (
    Params,
    as_list,
    check_known,
    get_bool,
    get_metadata,
    get_str,
    invalid,
    keys,
    merge_metadata,
    missing,
    state_error,
)
from .stripe_store import PLATFORM_ACCOUNT, Account, Obj, Store, new_id, now

MAX_ENDPOINTS = 16  # Stripe's limit of webhook endpoints per account in test mode
EVENT_TYPES: frozenset[str] = frozenset(
    typing.get_args(typing.get_args(WebhookEndpointCreateParams.__annotations__["enabled_events"])[0])
)
CREATE_KEYS = keys("url enabled_events connect description metadata api_version")
UPDATE_KEYS = keys("url enabled_events disabled description metadata")


def _url(p: Params, required: bool) -> str | None:
    url = get_str(p, "url", required=required)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid(f"Invalid URL: {url}", "url", "url_invalid")
    return url


def _events(p: Params, required: bool) -> list[str] | None:
    if "enabled_events" not in p:
        if required:
            raise missing("enabled_events")
        return None
    events = as_list(p["enabled_events"], "enabled_events")
    if not events:
        raise invalid("Invalid array: enabled_events must contain at least one event type.", "enabled_events")
    for i, event in enumerate(events):
        if event not in EVENT_TYPES:
            raise invalid(
                f"Invalid enabled_events[{i}]: must be one of the event types or '*'.", f"enabled_events[{i}]"
            )
    return list(dict.fromkeys(events))


def create_endpoint(acct: Account, p: Params) -> Obj:
    check_known(p, CREATE_KEYS)
    url = _url(p, True)
    enabled = _events(p, True)
    connect = get_bool(p, "connect") or False
    description = get_str(p, "description", max_len=5000)
    metadata = get_metadata(p) or {}
    api_version = get_str(p, "api_version")
    if len(acct.webhook_endpoints) >= MAX_ENDPOINTS:
        raise state_error(f"You have reached the maximum of {MAX_ENDPOINTS} test webhook endpoints.")
    endpoint: Obj = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": now(),
        "description": description or None,
        "enabled_events": enabled,
        "livemode": False,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
    }
    secret = "whsec_" + "".join(random.choices(string.ascii_letters + string.digits, k=32))
    acct.webhook_endpoints[endpoint["id"]] = endpoint
    acct.webhook_secrets[endpoint["id"]] = secret
    acct.webhook_connect[endpoint["id"]] = connect
    return {**endpoint, "secret": secret}


def update_endpoint(acct: Account, endpoint_id: str, p: Params) -> Obj:
    check_known(p, UPDATE_KEYS)
    url = _url(p, False)
    enabled = _events(p, False)
    disabled = get_bool(p, "disabled")
    metadata = get_metadata(p)
    description = get_str(p, "description", max_len=5000)
    endpoint = acct.get("webhook_endpoint", acct.webhook_endpoints, endpoint_id)
    if url is not None:
        endpoint["url"] = url
    if enabled is not None:
        endpoint["enabled_events"] = enabled
    if disabled is not None:
        endpoint["status"] = "disabled" if disabled else "enabled"
    if "description" in p:
        endpoint["description"] = description or None
    endpoint["metadata"] = merge_metadata(endpoint["metadata"], metadata)
    return endpoint


def delete_endpoint(acct: Account, endpoint_id: str) -> Obj:
    acct.get("webhook_endpoint", acct.webhook_endpoints, endpoint_id)
    del acct.webhook_endpoints[endpoint_id]
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


def _wants(endpoint: Obj, event_type: str) -> bool:
    enabled = endpoint["enabled_events"]
    return endpoint["status"] == "enabled" and ("*" in enabled or event_type in enabled)


def endpoints_for(store: Store, acct: Account, event_type: str) -> list[tuple[Account, Obj]]:
    """The (owner account, endpoint) pairs an event of ``acct`` is delivered to."""
    platform = store.account(PLATFORM_ACCOUNT)
    owners = [(acct, False)] if acct.id == PLATFORM_ACCOUNT else [(platform, True), (acct, False)]
    return [
        (owner, endpoint)
        for owner, connect in owners
        for endpoint in owner.webhook_endpoints.values()
        if owner.webhook_connect[endpoint["id"]] == connect and _wants(endpoint, event_type)
    ]
