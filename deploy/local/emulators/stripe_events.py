"""Events: what handlers noted becomes Stripe ``event`` objects; ``GET /v1/events`` and ``/v1/events/{id}``.

An event lives on the account its object lives on (``Stripe-Account`` scoping, like Stripe): the platform's
``GET /v1/events`` never lists a connected account's events. Events of a connected account carry
``account``; the platform's own events have no ``account`` key, as in Stripe's payloads. ``data.object`` is
the object as it was right after the change (never expanded), ``invoice.updated`` carries
``data.previous_attributes``. Events of control-API actions (a customer on the hosted page) have
``request: {"id": null, "idempotency_key": null}``, as Stripe's automatic events do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .stripe_params import Params, as_list, check_known, get_dict, get_int, get_str, invalid, keys
from .stripe_store import PLATFORM_ACCOUNT, Account, Obj, new_id, now, paginate

# The version stripe-python 16 pins; events are rendered as the emulator's objects are (basil+ shapes).
API_VERSION = "2026-10-28.endive"
EVENT_LIST_KEYS = keys("type types created delivery_success limit starting_after ending_before")
RANGE_KEYS = frozenset({"gt", "gte", "lt", "lte"})
RETENTION_S = 30 * 86400  # Stripe lists the events of the last 30 days

Sink = Callable[[Account, Obj], None]


def snapshot(obj: Obj) -> Obj:
    """A deep copy: nested objects (``status_transitions``) change in place later."""
    copy: Obj = json.loads(json.dumps(obj))
    return copy


def changes(before: Obj, after: Obj) -> Obj:
    """``previous_attributes``: the old values of what changed (one level into nested objects, like Stripe)."""
    previous: Obj = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new or key == "lines":
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            previous[key] = {k: v for k, v in old.items() if new.get(k) != v}
        else:
            previous[key] = old
    return previous


def publish(acct: Account, sink: Sink | None, request_id: str | None, idempotency_key: str | None) -> list[Obj]:
    """Turn what the handler noted into events (stored, then handed to the delivery sink)."""
    noted, acct.noted = acct.noted, []
    events = []
    for event_type, obj, previous in noted:
        data: Obj = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        event: Obj = {"id": new_id("evt"), "object": "event"}
        if acct.id != PLATFORM_ACCOUNT:
            event["account"] = acct.id
        event.update(
            api_version=API_VERSION,
            created=now(),
            data=data,
            livemode=False,
            pending_webhooks=0,
            request={"id": request_id, "idempotency_key": idempotency_key},
            type=event_type,
        )
        acct.events[event["id"]] = event
        events.append(event)
        if sink is not None:
            sink(acct, event)
    return events


def _type_filter(p: Params) -> Callable[[str], bool]:
    if "type" in p and "types" in p:
        raise invalid("You may pass either `type` or `types`, but not both.", "types")
    if "types" in p:
        wanted = as_list(p["types"], "types")
        if not wanted or len(wanted) > 20 or not all(isinstance(t, str) for t in wanted):
            raise invalid("Invalid types: must be an array of 1 to 20 event types.", "types")
        return lambda t: t in wanted
    single = get_str(p, "type")
    if single is None:
        return lambda _t: True
    pattern = re.compile(".*".join(re.escape(part) for part in single.split("*")) + r"\Z")
    return lambda t: pattern.match(t) is not None


def _created_filter(p: Params) -> Callable[[int], bool]:
    if "created" not in p:
        return lambda _c: True
    if isinstance(p["created"], str):
        exact = get_int(p, "created")
        return lambda c: c == exact
    bounds = get_dict(p, "created") or {}
    check_known(bounds, RANGE_KEYS, "created")
    limits = {k: get_int(bounds, k, prefix="created") for k in RANGE_KEYS if k in bounds}
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda c, v: c > v,
        "gte": lambda c, v: c >= v,
        "lt": lambda c, v: c < v,
        "lte": lambda c, v: c <= v,
    }
    return lambda c: all(v is None or checks[k](c, v) for k, v in limits.items())


def list_events(acct: Account, p: Params, url: str) -> Obj:
    check_known(p, EVENT_LIST_KEYS)
    type_ok = _type_filter(p)
    created_ok = _created_filter(p)
    success = get_str(p, "delivery_success")
    if success is not None and success not in ("true", "false"):
        raise invalid(f"Invalid boolean: {success}", "delivery_success")
    oldest = now() - RETENTION_S
    events = [
        e
        for e in acct.events.values()
        if e["created"] >= oldest
        and type_ok(e["type"])
        and created_ok(e["created"])
        and (success is None or (e["pending_webhooks"] == 0) == (success == "true"))
    ]
    return paginate(events, p, url, "event")
