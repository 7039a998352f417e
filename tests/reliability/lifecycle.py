"""The ``webhook_faults`` scenario's trouble: links created, then moved through their lifecycle in Stripe
while the emulator's webhook deliveries are dropped, duplicated, delayed and reordered, and
``paylink webhooks`` is SIGKILLed mid-stream.

- ``drive``: the chaos. As links are created, each gets a random plan of actions on its invoice through
  the emulator (paid out of band, a hosted-page payment failing then succeeding, marked uncollectible,
  voided, paid after uncollectible, and actions Stripe refuses, such as voiding a paid invoice); a few
  invoices are paid while their saga still runs (the webhook answers 503 until the link exists). Webhook
  delivery faults are registered at random, scoped to the tenants' accounts (``drop``, ``duplicate``,
  ``delay``, ``hold`` then release newest first); the webhooks process is SIGKILLed three times and
  restarted, so deliveries meet refused connections and are retried on a short schedule. A *stranger*
  connected account creates invoices whose metadata names the tenants' links (forged events: ignored).
  Once every link exists, the emulator's clock jumps past the due dates, so later webhooks also make
  links overdue (the emulator is reset after the scenario: its clock only moves forward): some plans
  wait for the jump halfway, and a late round acts once more on most links still payable.
- ``finish``: waits for the deliveries to end, runs ``paylink reconcile`` (it recovers what the drops
  lost), and counts what happened.
- ``goal``: the trouble really happened.

The invariants that judge it are ``lifecycle_*`` in ``tests.reliability.invariants``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integration.harness import STRIPE_HEADERS
from tests.reliability.invariants import Observation
from tests.reliability.runner import ScenarioRun

# Short, so that a delivery refused while the webhooks process is down is retried within the run
# (7 attempts over 19.5 s); the default is restored by ``finish``.
RETRY_DELAYS_S = [0.5, 1.0, 2.0, 3.0, 5.0, 8.0]
OVERDUE_JUMP_S = 20 * 86_400  # past the links' 14-day due dates
KILLS = 3
EAGER_PAYMENTS = 4  # invoices paid while their saga still runs (the shortener is made slow meanwhile)
FORGED = 4  # invoices on a stranger's account naming the tenants' links

# Each plan is the actions on one link's invoice, in order; the weights make every path common. "later"
# waits for the clock jump: what follows also shows the due date passed (overdue).
PLANS: list[tuple[tuple[str, ...], int]] = [
    (("fail", "later", "fail", "pay"), 2),
    (("later", "uncollectible", "void"), 2),
    (("later", "fail", "pay_out_of_band"), 1),
    (("uncollectible", "later", "fail"), 1),
    (("pay_out_of_band",), 3),
    (("fail", "pay"), 3),
    (("fail", "fail", "pay"), 2),
    (("uncollectible",), 2),
    (("uncollectible", "pay_out_of_band"), 2),
    (("uncollectible", "fail", "pay"), 2),
    (("uncollectible", "void"), 2),
    (("void",), 2),
    (("fail", "void"), 2),
    (("fail",), 1),
    ((), 1),
    (("pay_out_of_band", "void"), 1),  # Stripe refuses the void: paid is final
    (("void", "pay"), 1),  # Stripe refuses the payment: void is final
    (("pay", "uncollectible"), 1),  # Stripe refuses: only open invoices can be marked uncollectible
]
FAULT_KINDS = [("drop", 2), ("duplicate", 3), ("delay", 2), ("hold", 3)]
DROPPABLE = ["invoice.paid", "invoice.voided", "invoice.marked_uncollectible"]  # reconcile recovers these


@dataclass
class Link:
    payment_link_id: str
    invoice_id: str
    stripe_account: str
    account_id: str
    plan: tuple[str, ...] = ()


@dataclass
class Driver:
    """The state of one run of ``drive``, kept on the run for ``finish`` and ``goal``."""

    run: ScenarioRun
    api: httpx.AsyncClient
    links: dict[str, Link] = field(default_factory=dict)
    eager: set[str] = field(default_factory=set)
    jumped: asyncio.Event = field(default_factory=asyncio.Event)  # the clock is past the due dates
    actions: Counter[str] = field(default_factory=Counter)  # driven (200) per action
    refused: Counter[str] = field(default_factory=Counter)  # refused by Stripe (400) per action
    fault_ids: list[str] = field(default_factory=list)
    stranger: str = field(default_factory=lambda: f"acct_stranger{uuid.uuid4().hex[:10]}")
    forged: int = 0
    reconcile_output: str = ""

    @property
    def accounts(self) -> list[str]:
        return [tenant.stripe_account for tenant in self.run.world.active]

    async def act(self, link: Link, action: str) -> None:
        """One action on the link's invoice, as a user in Stripe (or a customer on the hosted page)."""
        headers = {"Stripe-Account": link.stripe_account}
        path = f"/v1/invoices/{link.invoice_id}"
        if action == "pay_out_of_band":
            response = await self.api.post(f"{path}/pay", data={"paid_out_of_band": "true"}, headers=headers)
        elif action == "uncollectible":
            response = await self.api.post(f"{path}/mark_uncollectible", headers=headers)
        elif action == "void":
            response = await self.api.post(f"{path}/void", headers=headers)
        else:
            outcome = "failed" if action == "fail" else "succeeded"
            body = {"account": link.stripe_account, "outcome": outcome, "failure_message": "Your card was declined."}
            response = await self.api.post(f"/_emulator/invoices/{link.invoice_id}/hosted_payment", json=body)
        if response.status_code == 200:
            self.actions[action] += 1
        elif response.status_code == 400:
            self.refused[action] += 1
        else:
            self.run.notes.append(f"{action} on {link.invoice_id}: {response.status_code} {response.text[:120]}")

    async def play(self, link: Link) -> None:
        await asyncio.sleep(self.run.rng.uniform(0.0, 2.0))
        for action in link.plan:
            if action == "later":
                await self.jumped.wait()
                continue
            await self.act(link, action)
            await asyncio.sleep(self.run.rng.uniform(0.3, 2.0))

    async def late(self, link: Link) -> None:
        """One more action on a link whose invoice is still open or uncollectible, after the clock jump."""
        await asyncio.sleep(self.run.rng.uniform(0.0, 2.0))
        headers = {"Stripe-Account": link.stripe_account}
        invoice = await self.api.get(f"/v1/invoices/{link.invoice_id}", headers=headers)
        status = invoice.raise_for_status().json()["status"]
        if status not in ("open", "uncollectible"):
            return
        choices = ["fail", "fail", "pay", "void"] + (["uncollectible", "uncollectible"] if status == "open" else [])
        await self.act(link, self.run.rng.choice(choices))

    async def add_fault(self, spec: dict[str, Any]) -> None:
        response = await self.api.post("/_emulator/webhook_faults", json=spec)
        response.raise_for_status()
        self.fault_ids.append(str(response.json()["id"]))

    async def release(self) -> int:
        """Sends the held deliveries newest first; counts them as reordered when there were two or more."""
        response = await self.api.post("/_emulator/webhook_deliveries/release", json={"order": "reverse"})
        response.raise_for_status()
        released = len(response.json()["released"])
        if released >= 2:
            self.run.chaos["webhook deliveries reordered"] += released
        return released


def _driver(run: ScenarioRun) -> Driver:
    driver = run.state.get("lifecycle")
    assert isinstance(driver, Driver), "drive() runs first"
    return driver


async def _created(run: ScenarioRun) -> list[dict[str, Any]]:
    return [doc async for doc in run.db["sagas"].find({"status": "created"}, {"result": 1})]


async def _terminal(run: ScenarioRun) -> int:
    return await run.db["sagas"].count_documents({"status": {"$in": ["created", "failed", "compensation_failed"]}})


async def play_links(driver: Driver, stop: asyncio.Event) -> None:
    """Gives every new created link a plan and plays it; once every saga has ended, jumps the clock."""
    run, plays = driver.run, []
    plans, weights = [plan for plan, _ in PLANS], [weight for _, weight in PLANS]
    expected = len({sent.event_id for sent in run.sent if sent.valid})
    deadline = time.monotonic() + run.scenario.produce_s + 90
    ended = False
    while not ended:
        ended = run.elapsed() > run.scenario.produce_s and await _terminal(run) >= expected
        if time.monotonic() > deadline:
            run.notes.append("not every saga ended while driving the lifecycle")
            ended = True
        for saga in await _created(run):  # once more after the last saga ended: it may be a created one
            result = saga["result"]
            link_id = str(result["payment_link_id"])
            if link_id in driver.links:
                continue
            link = Link(link_id, result["invoice_id"], result["stripe_account"], result["account_id"])
            link.plan = () if link_id in driver.eager else run.rng.choices(plans, weights)[0]
            driver.links[link_id] = link
            plays.append(asyncio.create_task(driver.play(link)))
        await asyncio.sleep(0.3)
    # Every link exists: from now on Stripe's clock is past their due dates (new requests would be refused).
    (await driver.api.post("/_emulator/clock", json={"advance_seconds": OVERDUE_JUMP_S})).raise_for_status()
    run.reset_stripe_after = True
    run.chaos["clock jumped past due dates"] += 1
    driver.jumped.set()
    await asyncio.gather(*plays)
    # A late round on most links still payable: their webhooks now also show the due date passed.
    late = [link for link in driver.links.values() if run.rng.random() < 0.7]
    await asyncio.gather(*(driver.late(link) for link in late))
    stop.set()


async def _eager(driver: Driver, stop: asyncio.Event) -> None:
    """Pays a few invoices between finalisation and the saga's end (the shortener is slowed meanwhile)."""
    run = driver.run
    await run.add_fault({"path": "/shorten", "latency_ms": 1500, "rate": 0.5}, emulator="shortener")
    while len(driver.eager) < EAGER_PAYMENTS and not stop.is_set() and run.elapsed() < run.scenario.produce_s:
        for account in driver.accounts:
            listed = await driver.api.get("/_emulator/objects", params={"account": account, "type": "invoice"})
            for invoice in listed.json()["data"]:
                link_id = (invoice.get("metadata") or {}).get("payment_link_id")
                if invoice.get("status") != "open" or not link_id or link_id in driver.eager:
                    continue
                saga = await run.db["sagas"].find_one({"_id": link_id}, {"status": 1})
                if saga is None or saga.get("status") != "running" or len(driver.eager) >= EAGER_PAYMENTS:
                    continue
                driver.eager.add(link_id)
                await driver.act(Link(link_id, invoice["id"], account, ""), "pay_out_of_band")
        await asyncio.sleep(0.2)


async def _storm(driver: Driver, stop: asyncio.Event) -> None:
    """Webhook delivery faults on the tenants' accounts, one after the other until the plays end."""
    run = driver.run
    kinds, weights = [kind for kind, _ in FAULT_KINDS], [weight for _, weight in FAULT_KINDS]
    # One lost void per tenant for sure: voided is final, so only reconcile can publish it.
    for account in driver.accounts:
        await driver.add_fault({"kind": "drop", "account": account, "type": "invoice.voided", "count": 1})
    while not stop.is_set():
        kind = run.rng.choices(kinds, weights)[0]
        spec: dict[str, Any] = {
            "kind": kind,
            "account": run.rng.choice(driver.accounts),
            "count": run.rng.randint(1, 3),
        }
        if kind == "drop" and run.rng.random() < 0.7:
            spec["type"] = run.rng.choice(DROPPABLE)
        if kind == "delay":
            spec["delay_ms"] = run.rng.randint(300, 4000)
        if kind == "hold":
            spec["count"] = run.rng.randint(2, 4)
        await driver.add_fault(spec)
        await asyncio.sleep(run.rng.uniform(1.5, 4.0) if kind == "hold" else run.rng.uniform(0.4, 1.5))
        if kind == "hold":
            await driver.release()


async def _kills(driver: Driver) -> None:
    run = driver.run
    for index in range(KILLS):
        await run.at(0.2 + index * 0.35 + run.rng.uniform(0.0, 0.2))
        hooks = run.webhooks[0]
        run.kill(hooks)
        run.notes.append(f"paylink webhooks SIGKILLed at {run.elapsed():.1f}s")
        await asyncio.sleep(run.rng.uniform(0.3, 2.0))
        run.restart(hooks)
        if not await run.webhooks_ready():
            run.notes.append("paylink webhooks did not come back within 30s")


async def _forge(driver: Driver) -> None:
    """A stranger's connected account makes invoices whose metadata names the tenants' links, then pays,
    voids or writes them off: Connect delivers those events too; none may move a tenant's link."""
    run = driver.run
    for _ in range(int(run.scenario.produce_s * 2)):
        if len(driver.links) >= FORGED:
            break
        await asyncio.sleep(0.5)
    headers = {"Stripe-Account": driver.stranger}
    customer = await driver.api.post("/v1/customers", data={"email": "stranger@example.com"}, headers=headers)
    customer.raise_for_status()
    for link in list(driver.links.values())[:FORGED]:
        form = {
            "customer": customer.json()["id"],
            "collection_method": "send_invoice",
            "currency": "eur",
            "days_until_due": "7",
            "metadata[payment_link_id]": link.payment_link_id,
            "metadata[account_id]": link.account_id,
        }
        invoice = (await driver.api.post("/v1/invoices", data=form, headers=headers)).raise_for_status().json()
        item = {"invoice": invoice["id"], "amount": "1000", "currency": "eur"}
        (await driver.api.post("/v1/invoiceitems", data=item, headers=headers)).raise_for_status()
        path = f"/v1/invoices/{invoice['id']}"
        (await driver.api.post(f"{path}/finalize", headers=headers)).raise_for_status()
        action = run.rng.choice(["pay", "void", "mark_uncollectible"])
        form = {"paid_out_of_band": "true"} if action == "pay" else {}
        (await driver.api.post(f"{path}/{action}", data=form, headers=headers)).raise_for_status()
        driver.forged += 1
        await asyncio.sleep(run.rng.uniform(0.2, 1.0))


async def drive(run: ScenarioRun) -> None:
    """The chaos of ``webhook_faults`` (see the module docstring)."""
    api = httpx.AsyncClient(base_url=run.services.stripe_base, headers=STRIPE_HEADERS, timeout=30)
    driver = Driver(run, api)
    run.state["lifecycle"] = driver
    config = {"webhook_retry_delays_s": RETRY_DELAYS_S, "webhook_timeout_s": 5}
    (await api.post("/_emulator/config", json=config)).raise_for_status()
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:  # one failing cancels the others (no kill after the run)
            for part in (play_links(driver, stop), _eager(driver, stop), _storm(driver, stop), _kills(driver)):
                group.create_task(part)
            group.create_task(_forge(driver))
    finally:
        # Faults still waiting to fire would hit the next deliveries: remove them, send what is held.
        listed = (await api.get("/_emulator/webhook_faults")).json()["data"]
        mine = [fault for fault in listed if fault["id"] in driver.fault_ids]
        for fault in mine:
            run.chaos[f"webhook {fault['kind']}"] += int(fault["fired"])
            await api.delete(f"/_emulator/webhook_faults/{fault['id']}")
        await driver.release()


async def _quiet(driver: Driver, timeout_s: float = 90.0) -> list[dict[str, Any]]:
    """Waits until no delivery is pending, retrying or held; returns every delivery."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = (await driver.api.get("/_emulator/webhook_deliveries")).json()
        busy = [d for d in listed["data"] if d["status"] in ("pending", "retrying", "held")]
        if listed["held"]:
            await driver.release()
        if not busy or time.monotonic() > deadline:
            if busy:
                driver.run.notes.append(f"{len(busy)} webhook deliveries still busy after {timeout_s:.0f}s")
            return list(listed["data"])
        await asyncio.sleep(0.5)


SUMMARY = re.compile(r"events (?P<events>.*?); unchanged")


async def finish(run: ScenarioRun) -> None:
    """Deliveries end; ``paylink reconcile`` recovers what was dropped; the figures are noted."""
    driver = _driver(run)
    try:
        deliveries = await _quiet(driver)
        defaults = {"webhook_retry_delays_s": None, "webhook_timeout_s": None}
        (await driver.api.post("/_emulator/config", json=defaults)).raise_for_status()
        code, output = await run.run_command("reconcile", "--since", "1h")
        driver.reconcile_output = output
        found = SUMMARY.search(output)
        recovered = 0
        if found and found["events"] != "none":
            recovered = sum(int(part.rsplit(" ", 1)[1]) for part in found["events"].split(", "))
        run.chaos["reconcile recovered"] += recovered
        if code != 0:
            run.notes.append(f"paylink reconcile exited {code}")
        _count_deliveries(driver, deliveries)
    finally:
        await driver.api.aclose()


def _count_deliveries(driver: Driver, deliveries: list[dict[str, Any]]) -> None:
    run, stranger = driver.run, driver.stranger
    retried = [
        d
        for d in deliveries
        if d["status"] == "succeeded"
        and any(a["error"] or (a["response_code"] or 200) >= 300 for a in d["attempts"][:-1])
    ]
    run.chaos["webhook deliveries retried"] += len(retried)
    run.chaos["webhook deliveries answered 503"] += sum(
        1 for d in deliveries if any(a["response_code"] == 503 for a in d["attempts"])
    )
    run.chaos["forged webhooks ignored"] += sum(
        1 for d in deliveries if d["account"] == stranger and d["status"] == "succeeded"
    )
    statuses = Counter(str(d["status"]) for d in deliveries)
    refused_connections = sum(1 for d in deliveries for a in d["attempts"] if a["error"])
    failed = [
        f"{d['id']} {d['type']} ({', '.join(str(a['response_code'] or a['error'])[:40] for a in d['attempts'])})"
        for d in deliveries
        if d["status"] == "failed"
    ]
    actions = ", ".join(f"{n} {a}" for a, n in sorted(driver.actions.items()))
    refused = ", ".join(f"{n} {a}" for a, n in sorted(driver.refused.items())) or "none"
    run.notes.append(
        f"lifecycle: {len(driver.links)} links ({len(driver.eager)} paid mid-saga), "
        f"{sum(driver.actions.values())} transitions driven ({actions}); refused by Stripe: {refused}; "
        f"{driver.forged} forged invoices on {stranger}"
    )
    run.notes.append(
        f"deliveries: {len(deliveries)} ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}); "
        f"{len(retried)} retried to success, {refused_connections} attempts without an answer"
        + (f"; retries exhausted (left to reconcile): {'; '.join(failed[:3])}" if failed else "")
    )
    with contextlib.suppress(StopIteration):
        summary = next(line for line in driver.reconcile_output.splitlines() if line.startswith("checked "))
        run.notes.append(f"reconcile: {summary}")


def played_out(run: ScenarioRun, driver: Driver, obs: Observation, wanted: dict[str, int]) -> list[str]:
    """What a lifecycle scenario's goal asks of every run: each ``wanted`` chaos count reached, at least 20
    links created, and every kind of lifecycle event published."""
    problems = []
    for what, count in wanted.items():
        if run.chaos[what] < count:
            problems.append(f"only {run.chaos[what]} x {what} (wanted >= {count})")
    if len(driver.links) < 20:
        problems.append(f"only {len(driver.links)} links were created")
    kinds = Counter(str(event.get("event_type")) for event in obs.lifecycle)
    for kind in ("PaymentLinkPaid", "PaymentLinkPaymentFailed", "PaymentLinkUncollectible", "PaymentLinkVoided"):
        if not kinds[kind]:
            problems.append(f"no {kind} was published")
    return problems


def goal(run: ScenarioRun, obs: Observation) -> list[str]:
    driver = _driver(run)
    wanted = {
        "webhooks SIGKILL": 2,
        "webhook drop": 1,
        "webhook duplicate": 1,
        "webhook delay": 1,
        "webhook deliveries reordered": 2,
        "webhook deliveries retried": 1,
        "forged webhooks ignored": 1,
        "reconcile recovered": 1,
    }
    problems = played_out(run, driver, obs, wanted)
    distinct = {str(event.get("event_id")): event for event in obs.lifecycle}
    by_kind = Counter(str(event.get("event_type")) for event in distinct.values())
    sources = Counter(str(event.get("source")) for event in distinct.values())
    run.notes.append(
        f"lifecycle events: {len(distinct)} distinct ({', '.join(f'{n} {k}' for k, n in sorted(by_kind.items()))}; "
        f"by source {dict(sorted(sources.items()))}), {obs.lifecycle_duplicates} re-deliveries"
    )
    return problems
