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
- ``no_secrets``: no API key or bearer token in any process output, result or dead letter message.
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
    "no_crash",
    "goal_met",
]
MAX_DETAILS = 8
SECRET_PATTERNS = [
    re.compile(re.escape(LOCAL_STRIPE_TEST_KEY)),
    re.compile(re.escape(LOCAL_SHORTENER_TOKEN)),
    re.compile(r"\b[sr]k_(test|live)_[A-Za-z0-9]{6,}"),
    re.compile(r"(?i)\bbearer\s+(?!\[redacted\])[A-Za-z0-9._~+/-]{6,}"),
]
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
    secrets: list[str] = field(default_factory=list)  # the run's configured key and token values

    @property
    def duplicates(self) -> int:
        counts = Counter(r.get("event_id") for r in self.results)
        return sum(n - 1 for n in counts.values())


def check_all(world: World, sent: list[Sent], topic: str, obs: Observation) -> dict[str, Check]:
    checks = {name: Check(name) for name in INVARIANTS}
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
            finalised = [i for i in found if i.get("status") in ("open", "paid")]
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
    texts += [("result", json.dumps(r)) for r in obs.results]
    texts += [("dead letter", str(d.get("message"))) for d in obs.dead_letters.values()]
    for where, text in texts:
        for pattern in [*SECRET_PATTERNS, *(re.compile(re.escape(v)) for v in obs.secrets if len(v) >= 6)]:
            found = pattern.search(text)
            if found:
                check.fail(f"{where}: {pattern.pattern[:30]}… at …{text[max(0, found.start() - 40) : found.start()]}")
