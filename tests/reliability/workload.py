"""What a reliability scenario sends: tenants in the CRM store and Stripe, and a stream of messages.

The world of one scenario (its own database and Stripe connected accounts):

- two active tenants (``a`` and ``b``), each with prices and contacts: ordinary ones, a few with
  ObjectId ids, some without an email (refused before any Stripe call: ``contact_missing_email``), and, on ``a``,
  a *victim* contact plus contacts whose email or phone carries Stripe search syntax (quotes,
  backslashes, ``OR``, ``email:``) aimed at the victim's customer;
- a *neighbour* tenant that never gets a request of its own: requests of tenant ``a`` name its contacts
  (cross-tenant), so nothing may ever reach its Stripe account;
- an account without a connected Stripe account.

Every message is recorded as ``Sent`` with what the contract says must come of it. Whether a message
is valid, and which ``event_id`` can be recovered from a bad one, is decided by the domain's own parser
(``parse_request``/``recover_identity``): the suite checks that the pipeline delivers what the parser
promises, not the parser itself (unit tests do that).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from domain.errors import PermanentError
from domain.intake import parse_cancel, parse_request, recover_identity
from tests.integration.harness import Tenant, request, seed_tenant

VICTIM_EMAIL = "victim@example.com"
VICTIM_PHONE = "+15550001111"
# Each would widen the customer search to the victim's customer if quotes/backslashes were not escaped.
HOSTILE_CONTACTS: dict[str, dict[str, Any]] = {
    "quote_or_email": {"name": "Quote Or", "email": 'q\\"OR"email:"victim@example.com'},
    "plain_quote_or": {"name": "Plain Quote", "email": 'p"OR"email:"victim@example.com'},
    "backslash_end": {"name": "Backslash", "email": "back\\\\@example.com"},
    "phone_or": {"name": "Phone Or", "email": "phone.or@example.com", "phone": '"OR"phone:"+15550001111'},
    "query_words": {"name": "AND OR NOT", "email": 'AND-OR-email~"victim@example.com', "phone": "1 OR 1"},
    "tilde_like": {"name": "Tilde", "email": "x~victim@example.com", "phone": '+1\\"'},
    # Unescaped, this one is a valid query that also matches the victim: the search would be widened.
    "phone_widen": {"name": "Widen", "email": "widen@example.com", "phone": '" OR email:"victim@example.com'},
}


@dataclass
class World:
    a: Tenant
    b: Tenant
    neighbour: Tenant
    unconnected: Tenant
    ordinary: dict[str, list[str]]  # tenant key ("a"/"b") → contact names that should get a link
    no_email: dict[str, list[str]]

    def tenant(self, key: str) -> Tenant:
        return self.a if key == "a" else self.b

    @property
    def active(self) -> list[Tenant]:
        return [self.a, self.b]

    @property
    def quiet_stripe_accounts(self) -> list[str]:
        """Connected accounts that no request may ever reach."""
        return [self.neighbour.stripe_account, self.unconnected.stripe_account]


def _contacts(prefix: str, count: int) -> dict[str, dict[str, Any]]:
    return {
        f"{prefix}{i}": {"name": f"Contact {prefix}{i}", "email": f"{prefix}{i}.{uuid.uuid4().hex[:6]}@example.com"}
        for i in range(count)
    }


async def seed_world(db: AsyncDatabase[dict[str, Any]], stripe_base: str, contacts_per_tenant: int = 24) -> World:
    a_contacts = {
        **_contacts("a", contacts_per_tenant),
        "victim": {"name": "Victim", "email": VICTIM_EMAIL, "phone": VICTIM_PHONE},
        **HOSTILE_CONTACTS,
        "a_no_email": {"name": "No Email"},
    }
    b_contacts = {**_contacts("b", contacts_per_tenant), "b_no_email": {"first_name": "Nomail", "phone": "+4912345"}}
    a = await seed_tenant(db, stripe_base, a_contacts, prices={"Plan": 4900, "Seat": 1500})
    b = await seed_tenant(db, stripe_base, b_contacts, prices={"Pro": 9900})
    neighbour = await seed_tenant(db, stripe_base, {f"n{i}": {"email": f"n{i}@neighbour.example"} for i in range(4)})
    unconnected = await seed_tenant(db, stripe_base, {"u0": {"email": "u0@example.com"}}, connected=False)
    # Some CRMs use ObjectIds: a few contacts of each active tenant have one (requests send its hex form).
    for tenant, prefix in ((a, "a"), (b, "b")):
        for i in range(3):
            oid = ObjectId()
            fields = {"name": f"Oid {prefix}{i}", "email": f"oid{i}.{oid}@example.com"}
            await db["contacts"].insert_one({"_id": oid, "account_id": tenant.account_id, **fields})
            tenant.contacts[f"{prefix}_oid{i}"] = {"_id": str(oid), **fields}
    ordinary = {
        "a": [n for n in a.contacts if n.startswith("a") and not n.endswith("no_email")] + list(HOSTILE_CONTACTS),
        "b": [n for n in b.contacts if n.startswith("b") and not n.endswith("no_email")],
    }
    return World(a, b, neighbour, unconnected, ordinary, {"a": ["a_no_email"], "b": ["b_no_email"]})


@dataclass
class Sent:
    """One message sent to the requests topic, and what must come of it."""

    label: str  # the kind of message, for reports ("created", "cross_tenant", "random_bytes", …)
    raw: bytes | None
    key: bytes | None
    valid: bool  # parse_request accepts it: a saga must end terminal
    event_id: str | None  # valid: the request's; invalid: the one recover_identity finds (→ a result)
    expected: str | None  # "created", a failure reason, or None when not predicted
    account_id: str | None = None
    contact_id: str | None = None
    stripe_account: str | None = None  # the connected account a created link must land on
    line_items: int = 0
    duplicate: bool = False
    partition: int = -1
    offset: int = -1
    cancel_of: str | None = None  # a PaymentLinkCancelRequested: the payment_link_id it names
    allowed: frozenset[str] = frozenset()  # a cancel: the final outcomes it may end in ("voided" or a reason)


def classify(label: str, raw: bytes | None, key: bytes | None, expected: str | None = None, **extra: Any) -> Sent:
    value = raw if raw is not None else b""
    try:
        parsed = parse_request(value)
    except PermanentError as error:
        identity = recover_identity(value)
        return Sent(
            label, raw, key, False, identity.event_id if identity else None, expected or error.reason.value, **extra
        )
    return Sent(
        label,
        raw,
        key,
        True,
        parsed.event_id,
        expected,
        account_id=parsed.account_id,
        contact_id=parsed.contact_id,
        line_items=len(parsed.line_items),
        **extra,
    )


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


class Mix:
    """Valid-shaped requests with mixed outcomes, in proportions typical of a busy CRM plus mistakes."""

    WEIGHTS: list[tuple[str, int]] = [
        ("created", 66),
        ("hostile_contact", 4),
        ("contact_not_found", 4),
        ("cross_tenant", 4),
        ("price_not_found", 4),
        ("invalid_due_date", 3),
        ("account_not_connected", 3),
        ("no_email", 2),
        ("invalid_line_items", 3),
        ("invalid_event", 3),
        ("forged_account", 1),
        ("duplicate", 3),
    ]

    def __init__(self, world: World, rng: random.Random, weights: dict[str, int] | None = None) -> None:
        self.world = world
        self.rng = rng
        self.sent_valid: list[Sent] = []
        chosen = {**dict(self.WEIGHTS), **(weights or {})}
        self._labels = list(chosen)
        self._weights = list(chosen.values())

    def _lines(self, tenant: Tenant) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for _ in range(self.rng.randint(1, 3)):
            if tenant.prices and self.rng.random() < 0.5:
                price = self.rng.choice(list(tenant.prices.values()))
                lines.append({"price_id": price, "quantity": self.rng.randint(1, 5)})
            else:
                amount = self.rng.randint(100, 50_000)
                lines.append({"description": f"Work {self.rng.randint(1, 999)}", "amount": amount})
        return lines

    def _body(self, tenant: Tenant, contact: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("line_items", self._lines(tenant))
        return request(tenant, contact, **fields)

    def _sent(self, label: str, body: dict[str, Any], expected: str, stripe_account: str | None = None) -> Sent:
        key = body["contact_id"].encode() if isinstance(body.get("contact_id"), str) else None
        sent = classify(label, _encode(body), key, expected, stripe_account=stripe_account)
        if sent.valid:
            self.sent_valid.append(sent)
        return sent

    def first(self) -> list[Sent]:
        """The victim's request goes first, so its customer exists when hostile contacts search."""
        a = self.world.a
        return [self._sent("created", self._body(a, "victim"), "created", a.stripe_account)]

    def next(self) -> Sent:
        label = self.rng.choices(self._labels, self._weights)[0]
        world, rng = self.world, self.rng
        key = rng.choice(["a", "b"])
        tenant = world.tenant(key)
        if label == "created":
            contact = rng.choice(world.ordinary[key])
            return self._sent(label, self._body(tenant, contact), "created", tenant.stripe_account)
        if label == "hostile_contact":
            contact = rng.choice([*HOSTILE_CONTACTS, "victim"])
            return self._sent(label, self._body(world.a, contact), "created", world.a.stripe_account)
        if label == "contact_not_found":
            return self._sent(label, self._body(tenant, f"con-missing-{uuid.uuid4().hex[:6]}"), label)
        if label == "cross_tenant":
            victim = rng.choice([world.neighbour, world.b if key == "a" else world.a])
            contact = victim.contacts[rng.choice(list(victim.contacts))]["_id"]
            return self._sent(label, self._body(tenant, contact), "contact_not_found")
        if label == "price_not_found":
            lines = [*self._lines(tenant), {"price_id": f"price_missing{rng.randint(1, 99)}", "quantity": 1}]
            rng.shuffle(lines)
            contact = rng.choice(world.ordinary[key])
            return self._sent(label, self._body(tenant, contact, line_items=lines), label)
        if label == "invalid_due_date":
            past = (date.today() - timedelta(days=rng.randint(0, 400))).isoformat()
            contact = rng.choice(world.ordinary[key])
            return self._sent(label, self._body(tenant, contact, due_date=past, days_until_due=None), label)
        if label == "account_not_connected":
            return self._sent(label, self._body(world.unconnected, "u0"), label)
        if label == "no_email":
            contact = world.no_email[key][0]
            return self._sent(label, self._body(tenant, contact), "contact_missing_email")
        if label == "invalid_line_items":
            lines = [{"price_id": "price_x", "description": "both", "amount": 5}]
            return self._sent(label, self._body(tenant, rng.choice(world.ordinary[key]), line_items=lines), label)
        if label == "invalid_event":
            body = self._body(tenant, rng.choice(world.ordinary[key]))
            mutation = rng.choice(["currency", "occurred_at", "schema_version", "quantity_str"])
            if mutation == "currency":
                body["currency"] = "EURO"
            elif mutation == "occurred_at":
                del body["occurred_at"]
            elif mutation == "schema_version":
                body["schema_version"] = 2
            else:
                body["days_until_due"] = "14"
                return self._sent(label, body, "invalid_due_date")  # a due-date field: the more precise reason
            return self._sent(label, body, "invalid_event")
        if label == "forged_account":
            # The connected account comes only from the account record: a field naming another tenant's
            # account is refused, and metadata naming it changes nothing.
            body = self._body(tenant, rng.choice(world.ordinary[key]))
            if rng.random() < 0.5:
                body["stripe_account"] = world.neighbour.stripe_account
                return self._sent(label, body, "invalid_event")
            body["metadata"] = {"stripe_account": world.neighbour.stripe_account, "account": "neighbour"}
            return self._sent(label, body, "created", tenant.stripe_account)
        # duplicate: the same bytes again (a producer re-sending with the same event_id)
        if not self.sent_valid:
            return self.next()
        original = rng.choice(self.sent_valid)
        return Sent(
            "duplicate",
            original.raw,
            original.key,
            True,
            original.event_id,
            original.expected,
            account_id=original.account_id,
            contact_id=original.contact_id,
            stripe_account=original.stripe_account,
            line_items=original.line_items,
            duplicate=True,
        )


# --- hostile input ---------------------------------------------------------------------------------

ONE_MIB = 1024 * 1024


def _template(world: World) -> dict[str, Any]:
    return request(world.a, world.ordinary["a"][0], line_items=[{"description": "x", "amount": 100}])


def hostile_fixed(world: World, rng: random.Random) -> list[Sent]:
    """Hand-made hostile messages: each shape once."""
    out: list[Sent] = []

    def add(label: str, raw: bytes | None, key: bytes | None = None) -> None:
        out.append(classify(label, raw, key))

    base = _template(world)
    add("empty", b"")
    add("tombstone", None, b"some-key")
    for scalar in (b"null", b"[]", b'"text"', b"42", b"true"):
        add("json_non_object", scalar)
    add("truncated_json", _encode(base)[: rng.randint(5, 60)])
    add("invalid_utf8", b"\xff\xfe\xfa" + rng.randbytes(64))
    add(
        "invalid_utf8_in_json",
        f'{{"event_id": "{uuid.uuid4()}", "event_type": "PaymentLinkRequested", "account_id": "'.encode()
        + b"\xc3\x28\xa0\xa1"
        + b'", "contact_id": "x"}',
    )
    add("deep_array", b"[" * 50_000 + b"]" * 50_000)
    nested = b'{"a":' * 3000 + b"1" + b"}" * 3001
    deep_meta = b'{"event_id": "' + str(uuid.uuid4()).encode() + b'", "metadata": ' + nested
    add("deep_object", deep_meta)
    add("huge_string_field", _encode({**_template(world), "description": "D" * 300_000}))
    add("huge_id", _encode({**_template(world), "account_id": "A" * 200_000}))
    add("huge_event_id", _encode({**_template(world), "event_id": "E" * 100_000}))
    many = [{"description": f"l{i}", "amount": 1} for i in range(20_000)]
    add("huge_array", _encode({**_template(world), "line_items": many}))
    add("many_metadata", _encode({**_template(world), "metadata": {f"k{i}": "v" for i in range(5_000)}}))
    one_mib = {**_template(world), "note_id": "N" * ONE_MIB}
    add("one_mib", _encode(one_mib))
    add("one_mib_garbage", rng.randbytes(ONE_MIB))
    add("nul_bytes", _encode({**_template(world), "contact_id": "con\u0000nul"}))
    add("wrong_types", _encode({**_template(world), "line_items": "all of them", "days_until_due": [14]}))
    add("unknown_field", _encode({**_template(world), "admin": True}))
    add("surrogates", b'{"event_id": "' + str(uuid.uuid4()).encode() + b'", "contact_id": "\\ud800\\udc00\\ud800"}')
    add("bom_prefixed", b"\xef\xbb\xbf" + _encode(_template(world)))
    return out


def hostile_random_bytes(rng: random.Random, count: int) -> list[Sent]:
    return [classify("random_bytes", rng.randbytes(rng.randint(1, 4096)), None) for _ in range(count)]


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
LINE_KEYS = ["price_id", "description", "amount", "quantity"]
_FIELDS = [
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "correlation_id",
    "account_id",
    "contact_id",
    "currency",
    "due_date",
    "days_until_due",
    "description",
    "line_items",
    "note_id",
    "metadata",
]


def hypothesis_messages(world: World, count: int, seed: int) -> list[Sent]:
    """Requests mutated by hypothesis: fields dropped, replaced by arbitrary JSON, added; some whole
    documents arbitrary JSON; some still valid (then they run a saga like any request)."""
    examples: list[bytes] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "arbitrary", "line_items"]))
        body: Any = _template(world)
        body["event_id"] = str(uuid.uuid4())
        if kind == "arbitrary":
            body = data.draw(_JSON)
            if isinstance(body, dict) and data.draw(st.booleans()):
                body["event_id"] = str(uuid.uuid4())
        elif kind == "line_items":
            body["line_items"] = data.draw(st.lists(st.dictionaries(st.sampled_from(LINE_KEYS), _JSON), max_size=4))
        else:
            for _ in range(data.draw(st.integers(1, 3))):
                name = data.draw(st.sampled_from(_FIELDS[1:]))
                action = data.draw(st.sampled_from(["drop", "replace", "add"]))
                if action == "drop":
                    body.pop(name, None)
                elif action == "replace":
                    body[name] = data.draw(_JSON)
                else:
                    body[data.draw(st.text(min_size=1, max_size=12))] = data.draw(_JSON)
        examples.append(json.dumps(body).encode())

    del seed  # derandomize makes the examples a function of the strategies alone
    collect()
    return [classify("hypothesis", raw, None) for raw in examples]


# --- cancels ---------------------------------------------------------------------------------------

CANCEL_WEIGHTS: list[tuple[str, int]] = [
    ("cancel", 40),  # a created link, some time later
    ("cancel_in_flight", 20),  # right behind its request (same contact key): the link is still being made
    ("cancel_foreign", 12),  # another tenant names the link: payment_link_not_found, never a void
    ("cancel_not_created", 12),  # the link's request failed
    ("cancel_second", 8),  # a second cancel (another event_id) of a link cancelled already
    ("cancel_duplicate", 8),  # the same cancel again (same bytes)
]


def cancel_body(account_id: str, link: Sent, contact_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "PaymentLinkCancelRequested",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": f"cancel-{uuid.uuid4().hex[:6]}",
        "account_id": account_id,
        "payment_link_id": link.event_id,
        "contact_id": contact_id or link.contact_id,
        "reason": "wrong amount",
    }


def cancel_sent(label: str, body: dict[str, Any], key: bytes | None, allowed: set[str]) -> Sent:
    """A cancel message: validated by the domain's own parser, keyed like the link's request."""
    raw = _encode(body)
    parsed = parse_cancel(raw)
    return Sent(
        label,
        raw,
        key,
        True,
        parsed.event_id,
        None,
        account_id=parsed.account_id,
        contact_id=parsed.contact_id,
        cancel_of=parsed.payment_link_id,
        allowed=frozenset(allowed),
    )


def mix_cancels(world: World, rng: random.Random, messages: list[Sent], count: int) -> list[Sent]:
    """``messages`` with ``count`` cancels placed after the requests they name (same contact key, so on
    the same partition, after them): of created links (later, or right behind the request while it is
    still being made), of failed links, by another tenant, second cancels and duplicates."""
    out = list(messages)
    requests = [s for s in messages if s.valid and s.cancel_of is None and not s.duplicate]
    created = [
        s for s in requests if s.expected == "created" and s.account_id in (world.a.account_id, world.b.account_id)
    ]
    failed = [s for s in requests if s.expected in ("contact_not_found", "price_not_found", "contact_missing_email")]
    failed = [s for s in failed if s.account_id in (world.a.account_id, world.b.account_id)]
    cancelled: dict[str, list[Sent]] = {}  # link → its own tenant's cancels
    foreign_hit: set[str] = set()
    sent_cancels: list[Sent] = []
    labels = [label for label, _ in CANCEL_WEIGHTS]
    weights = [weight for _, weight in CANCEL_WEIGHTS]

    def place(cancel: Sent, after: Sent, soon: bool) -> None:
        start = out.index(after) + 1
        stop = min(len(out), start + 3) if soon else len(out)
        out.insert(rng.randint(start, max(start, stop)), cancel)

    def other(account_id: str | None) -> str:
        return world.b.account_id if account_id == world.a.account_id else world.a.account_id

    for _ in range(count):
        label = rng.choices(labels, weights)[0]
        fresh = [s for s in created if s.event_id not in cancelled and s.event_id not in foreign_hit]
        if label in ("cancel", "cancel_in_flight") and fresh:
            link = rng.choice(fresh)
            assert link.account_id is not None
            cancel = cancel_sent(label, cancel_body(link.account_id, link), link.key, {"voided"})
            cancelled[str(link.event_id)] = [cancel]
            place(cancel, link, soon=label == "cancel_in_flight")
        elif label == "cancel_foreign" and fresh:
            link = rng.choice(fresh)
            thief = other(link.account_id)
            thief_tenant = world.a if thief == world.a.account_id else world.b
            contact = thief_tenant.contacts[rng.choice(world.ordinary["a" if thief_tenant is world.a else "b"])]["_id"]
            body = cancel_body(thief, link, contact_id=contact)
            key = link.key if rng.random() < 0.5 else contact.encode()
            cancel = cancel_sent(label, body, key, {"payment_link_not_found"})
            foreign_hit.add(str(link.event_id))
            place(cancel, link, soon=rng.random() < 0.3)
        elif label == "cancel_not_created" and failed:
            link = rng.choice(failed)
            assert link.account_id is not None
            cancel = cancel_sent(label, cancel_body(link.account_id, link), link.key, {"not_created"})
            place(cancel, link, soon=rng.random() < 0.3)
        elif label == "cancel_second" and cancelled:
            link_id = rng.choice(sorted(cancelled))
            first = cancelled[link_id][0]
            link = next(s for s in created if s.event_id == link_id)
            assert link.account_id is not None
            # Which of the two voids depends on faults and replays; exactly one does (checked per link).
            cancel = cancel_sent(label, cancel_body(link.account_id, link), link.key, {"voided", "already_void"})
            first.allowed = frozenset({"voided", "already_void"})
            cancelled[link_id].append(cancel)
            place(cancel, first, soon=False)
        elif label == "cancel_duplicate" and sent_cancels:
            original = rng.choice(sent_cancels)
            copy = Sent(
                "cancel_duplicate",
                original.raw,
                original.key,
                True,
                original.event_id,
                None,
                account_id=original.account_id,
                contact_id=original.contact_id,
                duplicate=True,
                cancel_of=original.cancel_of,
                allowed=original.allowed,
            )
            place(copy, original, soon=False)
            continue
        else:
            continue
        sent_cancels.append(cancel)
    return out
