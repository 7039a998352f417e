"""The invariants every scenario must hold once its traffic has settled, and what is observed to check them.

How requests that ended ``stripe_unavailable`` (retryable) are treated: by design their saga keeps its
progress (possibly a Stripe draft) for ``paylink replay``. The runner therefore replays every saga that
ended retryable (or ``compensation_failed``) once the faults are cleared, exactly as an operator would
(``paylink replay --all``), waits for the new results, and only then checks. So the invariants are strict:
after the replay no saga may be left retryable, and no draft may be left anywhere. How many requests
needed the replay is reported per scenario (``replayed``).

Invariants (columns of the final table):

- ``terminal_saga``: every valid request has exactly one saga, terminal, not left retryable.
- ``result_published``: every request with an ``event_id`` (valid, or recoverable from a bad message)
  has its final outcome on the results topic: the saga's stored result event, with at most one distinct
  result event per (request, attempt), and no result for a request never sent. Re-deliveries of the
  same result event are counted (``duplicates``), not violations.
- ``results_ordered``: one requester's (account, contact) results appear on the topic in the order they
  were decided (``occurred_at``): the worker serialises a contact's requests and the outbox keeps order
  (replayed requests excepted: ``paylink replay`` re-runs chosen requests concurrently); and one
  request's results (one per attempt) appear in the order they were decided.
- ``expected_outcome``: the final outcome is the one the request called for (``created``, or the
  failure reason), and a created link names the connected account of the requester's account record.
- ``consumed_accounted``: every message sent (partition, offset) ended as a result or a dead letter:
  valid ones have a result, every invalid one has a dead letter (with its raw bytes).
- ``offsets_committed``: the worker group's committed offsets reach the end of every partition.
- ``one_invoice``: exactly one finalised invoice per created link (the one in its result, with as many
  items as the request has lines); no draft left; no open invoice for a failed request.
- ``one_customer``: at most one customer per (contact, Stripe account), and a contact is linked to a
  customer made for that very contact (a search widened by quotes in an email would link another's).
- ``no_orphans``: every Stripe object belongs to a saga of the scenario: invoices by their
  ``payment_link_id``, items by their invoice, customers by the contact of a saga.
- ``tenant_isolation``: no request ever reached a Stripe account it may not touch (neighbour, unconnected:
  counted by an emulator probe on those accounts, and no objects there), and every object on an
  active tenant's account carries that tenant's CRM account id.
- ``no_secrets``: no API key, bearer token or webhook signing secret in any process output, result,
  lifecycle event or dead letter message.
- ``lifecycle_once``: per link, every transition is published under one event id at most: paid,
  voided, uncollectible and overdue each at most once among distinct event ids, with the id
  ``lifecycle_event_id(link, transition)``; each ``PaymentLinkPaymentFailed`` is named by a distinct
  ``invoice.payment_failed`` event of the link's invoice in Stripe (so at most one per failed attempt);
  one event id never carries two different transitions; no lifecycle event for a link that was not
  created. Re-deliveries of one event id are counted, not violations.
- ``lifecycle_forward``: per link, in topic order (first copy of each event id): nothing before its
  ``PaymentLinkCreated``, nothing after ``PaymentLinkPaid`` or ``PaymentLinkVoided`` (so never both, and
  no uncollectible after a final event), overdue at most once.
- ``lifecycle_owner``: every lifecycle event carries its link's own ``account_id``, ``contact_id``,
  ``stripe_account`` and ``invoice_id`` (as its ``PaymentLinkCreated`` has them): never a foreign
  tenant's, whatever events other accounts send naming the link.
- ``lifecycle_final``: once settled (after ``paylink reconcile`` where the scenario runs it), each
  created link's last published state equals its invoice's status in Stripe (``paid`` → paid
  published, ``void`` → voided, ``uncollectible`` → uncollectible, ``open`` → neither), and its
  lifecycle record agrees and owes the outbox nothing.
- ``cancel_answered``: every cancel sent (``PaymentLinkCancelRequested``, by ``event_id``) ends in exactly
  one distinct terminal result on the topic: its ``PaymentLinkCancelRejected`` (``cancel_request_id``) or
  the link's ``PaymentLinkVoided`` with its ``cancel_request_id``. Earlier results are allowed only as
  retryable rejections, one per attempt, later replayed (the latest wins, as for requests); the last is
  not retryable and is the one the cancel's record stores; no cancel result for a cancel never sent.
- ``cancel_outcome``: each cancel's final outcome is one its kind calls for (``voided`` for an open link
  of its own tenant, ``payment_link_not_found`` for another tenant's link, ``not_created`` for a failed
  request, ``already_paid`` after the invoice was paid, ``voided``/``already_void`` for a second cancel,
  with exactly one ``voided`` per link).
- ``void_once``: in the emulator, a created link's invoice is voided at most once (``invoice.voided``
  events of the invoice), and only under the void key of a cancel of that link by its own tenant
  (``paylink-cancel-<event_id>-void``); no ``PaymentLinkVoided`` names a cancel of another tenant or of
  another link; a cancel ending voided ⇒ the invoice is void in Stripe, and a void invoice ⇒ the cancel
  that voided it ended voided.
- ``no_crash``: no paylink process exited unless the scenario stopped it.
- ``goal_met``: the scenario's trouble really happened (kills, restarts, faults fired, the purge ran…),
  so a clean row means something.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumer.runtime.settings import LOCAL_SHORTENER_TOKEN, LOCAL_STRIPE_TEST_KEY
from domain.lifecycle_events import Transition, lifecycle_event_id
from tests.reliability.workload import Sent, World

INVARIANTS = [
    "terminal_saga",
    "result_published",
    "results_ordered",
    "expected_outcome",
    "consumed_accounted",
    "offsets_committed",
    "one_invoice",
    "one_customer",
    "no_orphans",
    "tenant_isolation",
    "no_secrets",
    "lifecycle_once",
    "lifecycle_forward",
    "lifecycle_owner",
    "lifecycle_final",
    "cancel_answered",
    "cancel_outcome",
    "void_once",
    "no_crash",
    "goal_met",
]
MAX_DETAILS = 8
SECRET_PATTERNS = [
    re.compile(re.escape(LOCAL_STRIPE_TEST_KEY)),
    re.compile(re.escape(LOCAL_SHORTENER_TOKEN)),
    re.compile(r"\b[sr]k_(test|live)_[A-Za-z0-9]{6,}"),
    re.compile(r"(?i)\bbearer\s+(?!\[redacted\])[A-Za-z0-9._~+/-]{6,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9]{6,}"),
]
TRANSITION_OF = {
    "PaymentLinkPaid": Transition.PAID,
    "PaymentLinkPaymentFailed": Transition.PAYMENT_FAILED,
    "PaymentLinkOverdue": Transition.OVERDUE,
    "PaymentLinkUncollectible": Transition.UNCOLLECTIBLE,
    "PaymentLinkVoided": Transition.VOIDED,
}
STATE_AFTER = {"PaymentLinkPaid": "paid", "PaymentLinkVoided": "void", "PaymentLinkUncollectible": "uncollectible"}
FINAL_EVENTS = {"PaymentLinkPaid", "PaymentLinkVoided"}
OWNER_FIELDS = ("account_id", "contact_id", "stripe_account", "invoice_id")
TERMINAL = {"created", "failed", "compensation_failed"}
PLACE = "__place"  # (partition, offset) of a result record, added by the reader


@dataclass
class Check:
    name: str
    violations: int = 0
    details: list[str] = field(default_factory=list)

    def fail(self, detail: str, count: int = 1) -> None:
        self.violations += count
        if len(self.details) < MAX_DETAILS:
            self.details.append(detail)

    @property
    def held(self) -> bool:
        return self.violations == 0


@dataclass
class Observation:
    """Everything the checks look at, gathered once the scenario has settled."""

    sagas: dict[str, dict[str, Any]]  # _id → saga document
    dead_letters: dict[str, dict[str, Any]]  # "topic:partition:offset" → document
    contacts: dict[str, dict[str, Any]]  # str(_id) → contact document
    results: list[dict[str, Any]]  # every record on the results topic, decoded, in topic order
    unreadable_results: int
    committed: dict[int, int]  # partition → committed offset (-1: none)
    end_offsets: dict[int, int]
    stripe: dict[str, dict[str, list[dict[str, Any]]]]  # stripe account → type → objects
    probe_hits: dict[str, int]  # quiet stripe account → requests that reached it
    logs: str
    unexpected_exits: list[str]
    extra: dict[str, int] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # the run's configured key, token and webhook secrets
    lifecycle: list[dict[str, Any]] = field(default_factory=list)  # lifecycle events on the topic, in order
    lifecycles: dict[str, dict[str, Any]] = field(default_factory=dict)  # payment_link_id → lifecycle record
    stripe_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # account → events (webhooks)
    cancel_results: list[dict[str, Any]] = field(default_factory=list)  # PaymentLinkCancelRejected, topic order
    cancels: dict[str, dict[str, Any]] = field(default_factory=dict)  # cancel_request_id → cancel record

    @property
    def lifecycle_duplicates(self) -> int:
        counts = Counter(r.get("event_id") for r in self.lifecycle)
        return sum(n - 1 for n in counts.values())

    @property
    def duplicates(self) -> int:
        counts = Counter(r.get("event_id") for r in self.results)
        return sum(n - 1 for n in counts.values())


def check_all(world: World, sent: list[Sent], topic: str, obs: Observation) -> dict[str, Check]:
    checks = {name: Check(name) for name in INVARIANTS}
    cancels = [s for s in sent if s.cancel_of is not None]
    sent = [s for s in sent if s.cancel_of is None]
    _terminal_sagas(sent, obs, checks["terminal_saga"])
    _results(sent, obs, checks["result_published"])
    _ordered(sent, obs, checks["results_ordered"])
    _expected(sent, obs, checks["expected_outcome"])
    _accounted(sent, topic, obs, checks["consumed_accounted"])
    _offsets(obs, checks["offsets_committed"])
    _invoices(world, sent, obs, checks["one_invoice"])
    _customers(world, obs, checks["one_customer"])
    _orphans(world, obs, checks["no_orphans"])
    _isolation(world, obs, checks["tenant_isolation"])
    _secrets(obs, checks["no_secrets"])
    links = created_links(obs)
    _lifecycle_once(links, obs, checks["lifecycle_once"])
    _lifecycle_forward(links, obs, checks["lifecycle_forward"])
    _lifecycle_owner(links, obs, checks["lifecycle_owner"])
    _lifecycle_final(links, obs, checks["lifecycle_final"])
    _cancel_answered(cancels, obs, checks["cancel_answered"])
    _cancel_outcome(cancels, obs, checks["cancel_outcome"])
    _void_once(links, cancels, obs, checks["void_once"])
    for exit_ in obs.unexpected_exits:
        checks["no_crash"].fail(exit_)
    return checks


def _valid_ids(sent: list[Sent]) -> set[str]:
    return {s.event_id for s in sent if s.valid and s.event_id}


def _terminal_sagas(sent: list[Sent], obs: Observation, check: Check) -> None:
    for event_id in sorted(_valid_ids(sent)):
        saga = obs.sagas.get(event_id)
        if saga is None:
            check.fail(f"{event_id}: no saga")
        elif saga.get("status") not in TERMINAL:
            check.fail(f"{event_id}: saga still {saga.get('status')}")
        elif (saga.get("failure") or {}).get("retryable") or saga.get("status") == "compensation_failed":
            failure = saga.get("failure") or {}
            check.fail(
                f"{event_id}: left {saga['status']} {failure.get('reason')} after replay: {failure.get('message')}"
            )


def _by_request(obs: Observation) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in obs.results:
        grouped[str(result.get("payment_link_id"))].append(result)
    return grouped


def _results(sent: list[Sent], obs: Observation, check: Check) -> None:
    if obs.unreadable_results:
        check.fail(f"{obs.unreadable_results} result record(s) are not JSON objects", obs.unreadable_results)
    grouped = _by_request(obs)
    expected_ids = {s.event_id for s in sent if s.event_id}
    for event_id in sorted(expected_ids):
        events = grouped.get(event_id, [])
        distinct = {e["event_id"]: e for e in events}
        if not distinct:
            check.fail(f"{event_id}: no result on the topic")
            continue
        per_attempt = Counter(e.get("attempt") for e in distinct.values())
        for attempt, count in per_attempt.items():
            if count > 1:
                check.fail(f"{event_id}: {count} distinct results for attempt {attempt}", count - 1)
        saga = obs.sagas.get(event_id)
        if saga is not None and saga.get("result"):
            stored = saga["result"]["event_id"]
            if stored not in distinct:
                check.fail(f"{event_id}: the saga's final result {stored} never reached the topic")
    for stray in sorted(set(grouped) - expected_ids):
        check.fail(f"result for a request never sent: {stray}")


def _ordered(sent: list[Sent], obs: Observation, check: Check) -> None:
    valid = _valid_ids(sent)
    first: dict[str, dict[str, Any]] = {}
    for result in sorted(obs.results, key=lambda r: tuple(r[PLACE])):
        if result.get("payment_link_id") in valid:
            first.setdefault(str(result.get("event_id")), result)
    by_requester: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in first.values():
        link = str(result.get("payment_link_id"))
        by_request[link].append(result)
        if int((obs.sagas.get(link) or {}).get("attempt") or 1) == 1:
            # Replayed requests are left out: ``paylink replay`` re-runs chosen requests later, concurrently.
            by_requester[(result.get("account_id"), result.get("contact_id"))].append(result)
    groups = [(f"{account}/{contact}", results) for (account, contact), results in by_requester.items()]
    groups += [(f"request {link}", results) for link, results in by_request.items()]
    for name, results in groups:
        decided = [datetime.fromisoformat(str(r.get("occurred_at"))) for r in results]
        for earlier, later, result in zip(decided, decided[1:], results[1:], strict=False):
            if later < earlier:
                check.fail(
                    f"{name}: result {result.get('event_id')} decided at {later} published "
                    f"after one decided at {earlier}"
                )


def final_outcome(event_id: str, obs: Observation, grouped: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    saga = obs.sagas.get(event_id)
    if saga is not None and saga.get("result"):
        result: dict[str, Any] = saga["result"]
        return result
    events = grouped.get(event_id)
    return events[-1] if events else None


def outcome_of(result: dict[str, Any]) -> str:
    return "created" if result.get("event_type") == "PaymentLinkCreated" else str(result.get("reason"))


def _expected(sent: list[Sent], obs: Observation, check: Check) -> None:
    grouped = _by_request(obs)
    seen: set[str] = set()
    for message in sent:
        if message.event_id is None or message.expected is None or message.event_id in seen:
            continue
        seen.add(message.event_id)
        result = final_outcome(message.event_id, obs, grouped)
        if result is None:
            continue  # reported by result_published
        outcome = outcome_of(result)
        if outcome != message.expected:
            check.fail(
                f"{message.label} {message.event_id}: expected {message.expected}, got {outcome}: "
                f"{str(result.get('message'))[:160]}"
            )
        elif outcome == "created" and message.stripe_account and result.get("stripe_account") != message.stripe_account:
            check.fail(f"{message.event_id}: created on {result.get('stripe_account')}, not {message.stripe_account}")


def _accounted(sent: list[Sent], topic: str, obs: Observation, check: Check) -> None:
    grouped = _by_request(obs)
    for message in sent:
        if message.offset < 0:
            check.fail(f"{message.label}: never acknowledged by the broker")
            continue
        where = f"{topic}:{message.partition}:{message.offset}"
        if message.valid:
            if message.event_id not in grouped:
                check.fail(f"{where} ({message.label}): no result")
            continue
        letter = obs.dead_letters.get(where)
        if letter is None:
            check.fail(f"{where} ({message.label}): no dead letter")
        elif bytes(letter.get("raw", b"")) != (message.raw or b""):
            check.fail(f"{where} ({message.label}): dead letter does not hold the raw bytes")


def _offsets(obs: Observation, check: Check) -> None:
    for partition, end in sorted(obs.end_offsets.items()):
        committed = obs.committed.get(partition, -1)
        if committed != end:
            check.fail(f"partition {partition}: committed {committed}, end {end}", max(1, end - max(committed, 0)))


def _invoices(world: World, sent: list[Sent], obs: Observation, check: Check) -> None:
    lines = {s.event_id: s.line_items for s in sent if s.valid}
    for tenant in world.active:
        objects = obs.stripe.get(tenant.stripe_account, {})
        invoices = objects.get("invoice", [])
        items = Counter(i.get("invoice") for i in objects.get("invoiceitem", []))
        by_link: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for invoice in invoices:
            if invoice.get("status") == "draft":
                check.fail(
                    f"draft left behind: {invoice['id']} ({(invoice.get('metadata') or {}).get('payment_link_id')})"
                )
            by_link[str((invoice.get("metadata") or {}).get("payment_link_id"))].append(invoice)
        for link, found in by_link.items():
            saga = obs.sagas.get(link)
            # A created link's invoice may since have been paid, marked uncollectible or voided in Stripe; a
            # voided invoice other than the result's is an earlier attempt's, compensated.
            kept = (saga or {}).get("result") or {}
            finalised = [
                i
                for i in found
                if i.get("status") in ("open", "paid", "uncollectible")
                or (i.get("status") == "void" and i["id"] == kept.get("invoice_id"))
            ]
            if saga is None:
                continue  # reported by no_orphans
            if saga.get("status") == "created":
                result = saga.get("result") or {}
                if len(finalised) != 1:
                    check.fail(
                        f"{link}: {len(finalised)} finalised invoices for one created link", abs(len(finalised) - 1)
                    )
                elif finalised[0]["id"] != result.get("invoice_id"):
                    check.fail(f"{link}: result names {result.get('invoice_id')}, Stripe holds {finalised[0]['id']}")
                elif items[finalised[0]["id"]] != lines.get(link):
                    check.fail(f"{link}: {items[finalised[0]['id']]} items on the invoice, {lines.get(link)} lines")
            elif finalised:
                check.fail(f"{link}: open invoice for a {saga.get('status')} request", len(finalised))
    for event_id in sorted(_valid_ids(sent)):
        saga = obs.sagas.get(event_id) or {}
        if saga.get("status") == "created":
            account = saga.get("stripe_account")
            invoice_id = (saga.get("result") or {}).get("invoice_id")
            held = {i["id"] for i in obs.stripe.get(str(account), {}).get("invoice", [])}
            if invoice_id not in held:
                check.fail(f"{event_id}: created, but its invoice {invoice_id} is not on {account}")


def _customers(world: World, obs: Observation, check: Check) -> None:
    for tenant in world.active:
        customers = obs.stripe.get(tenant.stripe_account, {}).get("customer", [])
        per_contact = Counter(str((c.get("metadata") or {}).get("contact_id")) for c in customers)
        for contact_key, count in per_contact.items():
            if count > 1:
                check.fail(f"contact {contact_key}: {count} customers on {tenant.stripe_account}", count - 1)
        made_for = {c["id"]: str((c.get("metadata") or {}).get("contact_id")) for c in customers}
        for contact_id, contact in obs.contacts.items():
            linked = (contact.get("stripe_customers") or {}).get(tenant.stripe_account)
            if linked is not None and made_for.get(linked) != contact_id:
                check.fail(f"contact {contact_id} linked to {linked}, a customer made for {made_for.get(linked)}")


def _orphans(world: World, obs: Observation, check: Check) -> None:
    saga_contacts = {(s.get("account_id"), str(s.get("contact_id"))) for s in obs.sagas.values()}
    for tenant in world.active:
        objects = obs.stripe.get(tenant.stripe_account, {})
        invoice_ids = {i["id"] for i in objects.get("invoice", [])}
        for invoice in objects.get("invoice", []):
            link = (invoice.get("metadata") or {}).get("payment_link_id")
            if link not in obs.sagas:
                check.fail(f"invoice {invoice['id']} of no saga (payment_link_id {link})")
        for item in objects.get("invoiceitem", []):
            if item.get("invoice") not in invoice_ids:
                check.fail(f"invoice item {item['id']} on no existing invoice ({item.get('invoice')})")
        for customer in objects.get("customer", []):
            metadata = customer.get("metadata") or {}
            if (metadata.get("account_id"), str(metadata.get("contact_id"))) not in saga_contacts:
                check.fail(f"customer {customer['id']} of no saga's contact ({metadata.get('contact_id')})")


def _isolation(world: World, obs: Observation, check: Check) -> None:
    for account, hits in obs.probe_hits.items():
        if hits:
            check.fail(f"{hits} Stripe request(s) reached {account}, which no request may touch", hits)
    for account in world.quiet_stripe_accounts:
        kinds = obs.stripe.get(account, {})
        count = sum(len(v) for k, v in kinds.items() if k in ("customer", "invoice", "invoiceitem"))
        if count:
            check.fail(f"{count} object(s) on {account}", count)
    for tenant in world.active:
        objects = obs.stripe.get(tenant.stripe_account, {})
        for kind in ("customer", "invoice"):
            for obj in objects.get(kind, []):
                owner = (obj.get("metadata") or {}).get("account_id")
                if owner != tenant.account_id:
                    check.fail(f"{kind} {obj['id']} on {tenant.stripe_account} belongs to CRM account {owner}")


def _secrets(obs: Observation, check: Check) -> None:
    texts = [("process output", obs.logs)]
    texts += [("result", json.dumps(r)) for r in [*obs.results, *obs.lifecycle]]
    texts += [("dead letter", str(d.get("message"))) for d in obs.dead_letters.values()]
    for where, text in texts:
        for pattern in [*SECRET_PATTERNS, *(re.compile(re.escape(v)) for v in obs.secrets if len(v) >= 6)]:
            found = pattern.search(text)
            if found:
                check.fail(f"{where}: {pattern.pattern[:30]}… at …{text[max(0, found.start() - 40) : found.start()]}")


# --- lifecycle --------------------------------------------------------------------------------------


def created_links(obs: Observation) -> dict[str, dict[str, Any]]:
    """payment_link_id → the ``PaymentLinkCreated`` stored on its saga, for every created link."""
    return {
        link: saga["result"]
        for link, saga in obs.sagas.items()
        if saga.get("status") == "created" and (saga.get("result") or {}).get("event_type") == "PaymentLinkCreated"
    }


def _distinct_lifecycle(obs: Observation) -> dict[str, list[dict[str, Any]]]:
    """payment_link_id → its lifecycle events, the first copy of each event id, in topic order."""
    first: dict[str, dict[str, Any]] = {}
    for event in sorted(obs.lifecycle, key=lambda r: tuple(r[PLACE])):
        first.setdefault(str(event.get("event_id")), event)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in first.values():
        grouped[str(event.get("payment_link_id"))].append(event)
    return grouped


def _lifecycle_once(links: dict[str, dict[str, Any]], obs: Observation, check: Check) -> None:
    by_id: dict[str, set[tuple[Any, Any]]] = defaultdict(set)
    for event in obs.lifecycle:
        by_id[str(event.get("event_id"))].add((event.get("event_type"), event.get("payment_link_id")))
    for event_id, kinds in sorted(by_id.items()):
        if len(kinds) > 1:
            check.fail(f"event id {event_id} carries {sorted(map(str, kinds))}", len(kinds) - 1)
    failures_reported: dict[str, set[str]] = defaultdict(set)  # invoice id → its invoice.payment_failed ids
    for events in obs.stripe_events.values():
        for stripe_event in events:
            if stripe_event.get("type") == "invoice.payment_failed":
                invoice = (stripe_event.get("data") or {}).get("object") or {}
                failures_reported[str(invoice.get("id"))].add(str(stripe_event["id"]))
    for link, events in sorted(_distinct_lifecycle(obs).items()):
        created = links.get(link)
        if created is None:
            check.fail(f"{len(events)} lifecycle event(s) for {link}, not a created link", len(events))
            continue
        per_type = Counter(str(e.get("event_type")) for e in events)
        for kind, count in sorted(per_type.items()):
            if kind != "PaymentLinkPaymentFailed" and count > 1:
                check.fail(f"{link}: {kind} published under {count} event ids", count - 1)
        reported = failures_reported[str(created.get("invoice_id"))]
        failure_ids = {lifecycle_event_id(link, Transition.PAYMENT_FAILED, evt): evt for evt in reported}
        for event in events:
            kind = str(event.get("event_type"))
            transition = TRANSITION_OF.get(kind)
            if transition is None:
                check.fail(f"{link}: unknown lifecycle event type {kind}")
            elif transition is Transition.PAYMENT_FAILED:
                if event.get("event_id") not in failure_ids:
                    check.fail(
                        f"{link}: PaymentLinkPaymentFailed {event.get('event_id')} names none of the "
                        f"{len(reported)} invoice.payment_failed event(s) of {created.get('invoice_id')}"
                    )
            elif event.get("event_id") != lifecycle_event_id(link, transition):
                check.fail(
                    f"{link}: {kind} has event id {event.get('event_id')}, not lifecycle_event_id(link, {transition})"
                )


def _lifecycle_forward(links: dict[str, dict[str, Any]], obs: Observation, check: Check) -> None:
    created_at: dict[str, tuple[int, int]] = {}
    for result in obs.results:
        if result.get("event_type") == "PaymentLinkCreated":
            partition, offset = result[PLACE]
            place = (int(partition), int(offset))
            link = str(result.get("payment_link_id"))
            created_at[link] = min(created_at.get(link, place), place)
    for link, events in sorted(_distinct_lifecycle(obs).items()):
        if link not in links:
            continue  # reported by lifecycle_once
        first = tuple(events[0][PLACE])
        if link not in created_at or created_at[link][0] != first[0] or created_at[link][1] > first[1]:
            check.fail(
                f"{link}: {events[0].get('event_type')} at {first}, "
                f"before its PaymentLinkCreated ({created_at.get(link)})"
            )
        kinds = [str(e.get("event_type")) for e in events]
        for index, kind in enumerate(kinds):
            if kind in FINAL_EVENTS and index + 1 < len(kinds):
                check.fail(f"{link}: {kinds[index + 1 :]} published after {kind}", len(kinds) - index - 1)
                break
        if kinds.count("PaymentLinkOverdue") > 1:
            check.fail(f"{link}: overdue {kinds.count('PaymentLinkOverdue')} times")


def _lifecycle_owner(links: dict[str, dict[str, Any]], obs: Observation, check: Check) -> None:
    for event in obs.lifecycle:
        created = links.get(str(event.get("payment_link_id")))
        if created is None:
            continue  # reported by lifecycle_once
        wrong = [
            f"{name} {event.get(name)} (not {created.get(name)})"
            for name in OWNER_FIELDS
            if event.get(name) != created.get(name)
        ]
        if wrong:
            check.fail(f"{event.get('payment_link_id')}: {event.get('event_type')} with {', '.join(wrong)}")


def _lifecycle_final(links: dict[str, dict[str, Any]], obs: Observation, check: Check) -> None:
    invoices = {invoice["id"]: invoice for objects in obs.stripe.values() for invoice in objects.get("invoice", [])}
    published = _distinct_lifecycle(obs)
    for link, created in sorted(links.items()):
        invoice = invoices.get(str(created.get("invoice_id")))
        if invoice is None:
            continue  # reported by one_invoice
        state = "open"
        for event in published.get(link, []):
            state = STATE_AFTER.get(str(event.get("event_type")), state)
        if state != invoice.get("status"):
            check.fail(f"{link}: last published state {state}, invoice {invoice['id']} is {invoice.get('status')}")
        record = obs.lifecycles.get(link)
        if record is None:
            if state != "open":
                check.fail(f"{link}: {state} published, no lifecycle record")
            continue
        if record.get("status") != invoice.get("status"):
            check.fail(f"{link}: lifecycle record {record.get('status')}, invoice is {invoice.get('status')}")
        owed = [entry for entry in record.get("history", []) if not entry.get("appended")]
        if owed:
            check.fail(f"{link}: lifecycle record owes the outbox {len(owed)} event(s)", len(owed))


# --- cancels ----------------------------------------------------------------------------------------

VOID_KEY = re.compile(r"^paylink-cancel-(?P<cancel>.+)-void$")


def cancel_results_by_id(obs: Observation) -> dict[str, list[dict[str, Any]]]:
    """cancel_request_id → its distinct results (first copy of each event id), in topic order: its
    rejections and the ``PaymentLinkVoided`` events that name it."""
    first: dict[str, dict[str, Any]] = {}
    voided = [e for e in obs.lifecycle if e.get("event_type") == "PaymentLinkVoided" and e.get("cancel_request_id")]
    for event in sorted([*obs.cancel_results, *voided], key=lambda r: tuple(r[PLACE])):
        first.setdefault(str(event.get("event_id")), event)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in first.values():
        grouped[str(event.get("cancel_request_id"))].append(event)
    return grouped


def cancel_outcome_of(result: dict[str, Any]) -> str:
    return "voided" if result.get("event_type") == "PaymentLinkVoided" else str(result.get("reason"))


def _originals(cancels: list[Sent]) -> dict[str, Sent]:
    """event_id → the cancel as first planned (duplicates resend its bytes)."""
    out: dict[str, Sent] = {}
    for cancel in cancels:
        if cancel.event_id and (cancel.event_id not in out or out[cancel.event_id].duplicate):
            out[cancel.event_id] = cancel
    return out


def _cancel_answered(cancels: list[Sent], obs: Observation, check: Check) -> None:
    grouped = cancel_results_by_id(obs)
    originals = _originals(cancels)
    for cancel in cancels:
        if cancel.offset < 0:
            check.fail(f"{cancel.label} {cancel.event_id}: never acknowledged by the broker")
    for cancel_id, cancel in sorted(originals.items()):
        results = grouped.get(cancel_id, [])
        if not results:
            check.fail(f"{cancel.label} {cancel_id}: no result on the topic")
            continue
        voided = [r for r in results if r.get("event_type") == "PaymentLinkVoided"]
        if len(voided) > 1:
            check.fail(f"{cancel_id}: {len(voided)} distinct PaymentLinkVoided", len(voided) - 1)
        per_attempt = Counter(r.get("attempt") for r in results if r.get("event_type") == "PaymentLinkCancelRejected")
        for attempt, count in per_attempt.items():
            if count > 1:
                check.fail(f"{cancel_id}: {count} distinct rejections for attempt {attempt}", count - 1)
        *earlier, last = results
        for result in earlier:
            if not result.get("retryable"):
                check.fail(
                    f"{cancel_id}: {cancel_outcome_of(result)} ({result.get('event_type')}) followed by "
                    f"{cancel_outcome_of(last)}: only a retryable rejection may be followed"
                )
        if last.get("retryable"):
            check.fail(f"{cancel_id}: left retryable after replay: {str(last.get('message'))[:160]}")
        for result in results:
            if result.get("payment_link_id") != cancel.cancel_of:
                check.fail(f"{cancel_id}: result names link {result.get('payment_link_id')}, not {cancel.cancel_of}")
        record = obs.cancels.get(cancel_id)
        if record is None:
            check.fail(f"{cancel_id}: no cancel record")
        elif (record.get("result") or {}).get("event_id") != last.get("event_id"):
            stored = (record.get("result") or {}).get("event_id")
            check.fail(f"{cancel_id}: record stores result {stored}, the topic's last is {last.get('event_id')}")
    for stray in sorted(set(grouped) - set(originals)):
        check.fail(f"cancel result for a cancel never sent: {stray}")


def _cancel_outcome(cancels: list[Sent], obs: Observation, check: Check) -> None:
    grouped = cancel_results_by_id(obs)
    voids_per_link: Counter[str] = Counter()
    for cancel_id, cancel in sorted(_originals(cancels).items()):
        results = grouped.get(cancel_id)
        if not results:
            continue  # reported by cancel_answered
        outcome = cancel_outcome_of(results[-1])
        if outcome == "voided":
            voids_per_link[str(cancel.cancel_of)] += 1
        if cancel.allowed and outcome not in cancel.allowed:
            check.fail(
                f"{cancel.label} {cancel_id}: expected {'/'.join(sorted(cancel.allowed))}, got {outcome}: "
                f"{str(results[-1].get('message'))[:160]}"
            )
    wanting = {str(c.cancel_of) for c in cancels if "voided" in c.allowed}
    for link in sorted(wanting):
        if voids_per_link[link] != 1:
            check.fail(f"link {link}: {voids_per_link[link]} of its cancels ended voided (wanted exactly 1)")


def _void_once(links: dict[str, dict[str, Any]], cancels: list[Sent], obs: Observation, check: Check) -> None:
    originals = _originals(cancels)
    invoices = {invoice["id"]: invoice for objects in obs.stripe.values() for invoice in objects.get("invoice", [])}
    voids: dict[str, list[dict[str, Any]]] = defaultdict(list)  # invoice id → its invoice.voided events
    for events in obs.stripe_events.values():
        for stripe_event in events:
            if stripe_event.get("type") == "invoice.voided":
                invoice = (stripe_event.get("data") or {}).get("object") or {}
                voids[str(invoice.get("id"))].append(stripe_event)
    grouped = cancel_results_by_id(obs)
    for link, created in sorted(links.items()):
        invoice_id = str(created.get("invoice_id"))
        found = voids.get(invoice_id, [])
        if len(found) > 1:
            check.fail(f"{link}: invoice {invoice_id} voided {len(found)} times in Stripe", len(found) - 1)
        for stripe_event in found:
            key = str((stripe_event.get("request") or {}).get("idempotency_key"))
            if not key.startswith("paylink-"):
                continue  # voided outside paylink (Stripe's dashboard, as webhook_faults does): not ours to judge
            matched = VOID_KEY.match(key)
            cancel = originals.get(matched.group("cancel")) if matched else None
            if cancel is None:
                check.fail(f"{link}: invoice {invoice_id} voided under key {key}, of no cancel sent")
                continue
            if cancel.cancel_of != link or cancel.account_id != created.get("account_id"):
                check.fail(
                    f"{link}: invoice {invoice_id} voided by cancel {cancel.event_id} of account "
                    f"{cancel.account_id} for link {cancel.cancel_of} (the link's account: {created.get('account_id')})"
                )
            results = grouped.get(str(cancel.event_id), [])
            if results and cancel_outcome_of(results[-1]) != "voided":
                check.fail(
                    f"{link}: cancel {cancel.event_id} voided {invoice_id} but ended {cancel_outcome_of(results[-1])}"
                )
    for cancel_id, results in sorted(grouped.items()):
        cancel = originals.get(cancel_id)
        for result in results:
            if result.get("event_type") != "PaymentLinkVoided":
                continue
            link = str(result.get("payment_link_id"))
            created = links.get(link, {})
            if cancel is None:
                continue  # reported by cancel_answered
            if cancel.cancel_of != link or cancel.account_id != created.get("account_id"):
                check.fail(
                    f"PaymentLinkVoided of {link} names cancel {cancel_id} of account {cancel.account_id} for "
                    f"link {cancel.cancel_of} (the link's account: {created.get('account_id')})"
                )
            keys = [
                (stripe_event.get("request") or {}).get("idempotency_key")
                for stripe_event in voids.get(str(created.get("invoice_id")), [])
            ]
            if keys != [f"paylink-cancel-{cancel_id}-void"]:
                check.fail(f"cancel {cancel_id} ended voided; Stripe voided {created.get('invoice_id')} under {keys}")
            invoice = invoices.get(str(created.get("invoice_id")))
            if invoice is None or invoice.get("status") != "void":
                status = None if invoice is None else invoice.get("status")
                check.fail(f"cancel {cancel_id} ended voided, invoice {created.get('invoice_id')} is {status}")
