"""A link's lifecycle end to end: the Stripe emulator delivers signed Connect webhooks to a real
``paylink webhooks`` process; the worker and relay run here; lifecycle events are read back from the
results topic. Then what webhooks cannot do: ``paylink reconcile`` recovers a dropped webhook, and the
overdue scan (with a clock past the due date) flags what is still open.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from consumer.runtime.bootstrap import build_scan_loop, open_components
from consumer.runtime.settings import Settings
from domain.lifecycle_events import Transition, lifecycle_event_id
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, wait_until
from tests.fakes.basics import FakeClock
from tests.integration.cli_helpers import paylink
from tests.integration.harness import (
    STRIPE_HEADERS,
    ResultCollector,
    Tenant,
    produce,
    request,
    running_pipeline,
    seed_tenant,
)

LIFECYCLE_TYPES = ["invoice.paid", "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible"]
CONTACTS = {name: {"name": name.title(), "email": f"{name}@example.com"} for name in "abcdefg"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def webhook_endpoint(stripe: httpx.AsyncClient, port: int) -> AsyncIterator[str]:
    """A Connect endpoint on the emulator pointing at our process; its signing secret."""
    form = {"url": f"http://127.0.0.1:{port}/stripe/webhooks", "connect": "true"}
    form.update({f"enabled_events[{i}]": kind for i, kind in enumerate(LIFECYCLE_TYPES)})
    created = (await stripe.post("/v1/webhook_endpoints", data=form)).raise_for_status().json()
    try:
        yield str(created["secret"])
    finally:
        await stripe.delete(f"/v1/webhook_endpoints/{created['id']}")


class Links:
    def __init__(self, stripe: httpx.AsyncClient, tenant: Tenant, created: dict[str, dict[str, Any]]) -> None:
        self._stripe, self._tenant, self.created = stripe, tenant, created

    @property
    def ids(self) -> dict[str, str]:
        """payment_link_id by contact name."""
        return {name: str(result["payment_link_id"]) for name, result in self.created.items()}

    @property
    def account(self) -> str:
        return self._tenant.stripe_account

    async def webhook_fault(self, stripe_api_base: str, kind: str, count: int) -> None:
        """A delivery fault on this tenant's webhooks only (the emulator serves other tests too)."""
        async with httpx.AsyncClient(base_url=stripe_api_base) as control:
            fault = {"kind": kind, "account": self.account, "count": count}
            (await control.post("/_emulator/webhook_faults", json=fault)).raise_for_status()

    def invoice(self, link: str) -> str:
        return str(self.created[link]["invoice_id"])

    async def post(self, path: str, **form: str) -> dict[str, Any]:
        headers = {"Stripe-Account": self._tenant.stripe_account}
        response = await self._stripe.post(path, data=form, headers=headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def pay_out_of_band(self, link: str) -> None:
        await self.post(f"/v1/invoices/{self.invoice(link)}/pay", paid_out_of_band="true")

    async def hosted_payment(self, link: str, outcome: str) -> None:
        body = {
            "account": self._tenant.stripe_account,
            "outcome": outcome,
            "failure_message": "Your card was declined.",
        }
        response = await self._stripe.post(f"/_emulator/invoices/{self.invoice(link)}/hosted_payment", json=body)
        assert response.status_code == 200, response.text


@pytest.fixture
async def lifecycle_stack(
    pipeline_stack: StackFactory, mongo_client: AsyncMongoClient[dict[str, Any]], stripe_api_base: str, tmp_path: Path
) -> AsyncIterator[tuple[Settings, Links, ResultCollector, PaylinkProcess]]:
    port = free_port()
    async with (
        httpx.AsyncClient(base_url=stripe_api_base, headers=STRIPE_HEADERS) as stripe,
        webhook_endpoint(stripe, port) as secret,
    ):
        stack = await pipeline_stack(webhooks_port=port, stripe_webhook_secrets=secret)
        db = mongo_client[stack.mongodb_uri.rsplit("/", 1)[1]]
        tenant = await seed_tenant(db, stripe_api_base, CONTACTS)
        bodies = {name: request(tenant, name) for name in CONTACTS}
        hooks = PaylinkProcess("webhooks", stack, tmp_path).start()
        try:
            async with running_pipeline(stack), ResultCollector(stack) as results:
                await produce(stack, list(bodies.values()))
                ids = {name: body["event_id"] for name, body in bodies.items()}
                created = await results.wait_for(set(ids.values()))
                await wait_until(lambda: _answers(port), 30, "the webhooks process")
                links = Links(stripe, tenant, {name: created[ids[name]] for name in ids})
                yield stack, links, results, hooks
        finally:
            hooks.terminate()


async def _answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_every_transition_reaches_the_results_topic_once_and_never_backwards(
    lifecycle_stack: tuple[Settings, Links, ResultCollector, PaylinkProcess], stripe_api_base: str
) -> None:
    stack, links, results, _ = lifecycle_stack
    link, account = links.ids, links.account
    await links.webhook_fault(stripe_api_base, "duplicate", 1)  # link a: its webhook delivered twice
    await links.pay_out_of_band("a")  # paid out of band
    await results.wait_until(lambda _: "PaymentLinkPaid" in results.of(link["a"]), "a paid")
    await links.hosted_payment("b", "failed")  # a failed attempt, then a successful one
    await results.wait_until(lambda _: "PaymentLinkPaymentFailed" in results.of(link["b"]), "b's failed attempt")
    await links.hosted_payment("b", "succeeded")
    await links.post(f"/v1/invoices/{links.invoice('c')}/mark_uncollectible")  # uncollectible, then voided
    # Stripe does not promise order: wait for the first to be published, or the void could arrive first.
    await results.wait_until(lambda _: "PaymentLinkUncollectible" in results.of(link["c"]), "c uncollectible")
    await links.post(f"/v1/invoices/{links.invoice('c')}/void")
    await links.post(f"/v1/invoices/{links.invoice('d')}/void")
    async with httpx.AsyncClient(base_url=stripe_api_base) as control:
        # Link e: its two transitions delivered in reverse order.
        await links.webhook_fault(stripe_api_base, "hold", 2)
        await links.post(f"/v1/invoices/{links.invoice('e')}/mark_uncollectible")
        await links.pay_out_of_band("e")
        released = (await control.post("/_emulator/webhook_deliveries/release", json={"order": "reverse"})).json()
        assert len(released["released"]) == 2

    await results.wait_until(
        lambda _: (
            results.of(link["a"])[-1:] == ["PaymentLinkPaid"]
            and results.of(link["b"])[-1:] == ["PaymentLinkPaid"]
            and results.of(link["c"])[-1:] == ["PaymentLinkVoided"]
            and results.of(link["d"])[-1:] == ["PaymentLinkVoided"]
            and results.of(link["e"])[-1:] == ["PaymentLinkPaid"]
        ),
        "every link's final event",
    )
    assert results.of(link["a"]) == ["PaymentLinkCreated", "PaymentLinkPaid"]
    assert results.of(link["b"]) == ["PaymentLinkCreated", "PaymentLinkPaymentFailed", "PaymentLinkPaid"]
    assert results.of(link["c"]) == ["PaymentLinkCreated", "PaymentLinkUncollectible", "PaymentLinkVoided"]
    assert results.of(link["d"]) == ["PaymentLinkCreated", "PaymentLinkVoided"]
    assert results.of(link["e"]) == ["PaymentLinkCreated", "PaymentLinkPaid"], "the late uncollectible moved nothing"
    paid = {e["payment_link_id"]: e for e in results.events if e["event_type"] == "PaymentLinkPaid"}
    assert paid[link["a"]]["paid_out_of_band"] is True and paid[link["b"]]["paid_out_of_band"] is False
    assert paid[link["a"]]["event_id"] == lifecycle_event_id(link["a"], Transition.PAID)
    assert all(e["source"] == "webhook" for e in results.events if e["event_type"] != "PaymentLinkCreated")
    failed = next(e for e in results.events if e["event_type"] == "PaymentLinkPaymentFailed")
    assert failed["stripe_account"] == account and failed["contact_id"] == links.created["b"]["contact_id"]
    headers = {k: v for k, v in results.records[-1].headers}
    assert headers["ce_type"].decode().startswith("PaymentLink") and headers["ce_source"] == b"paylink"
    assert stack.results_topic.endswith(".results")


async def test_reconcile_recovers_a_dropped_webhook_and_the_scan_flags_overdue_links(
    lifecycle_stack: tuple[Settings, Links, ResultCollector, PaylinkProcess], stripe_api_base: str
) -> None:
    stack, links, results, _ = lifecycle_stack
    link = links.ids
    await links.webhook_fault(stripe_api_base, "drop", 1)
    await links.pay_out_of_band("f")  # its invoice.paid webhook is lost

    dry = await paylink(stack, "reconcile", "--since", "1h", "--dry-run")
    assert dry.code == 0, dry.err
    assert results.of(link["f"]) == ["PaymentLinkCreated"], "a dry run publishes nothing"
    ran = await paylink(stack, "reconcile", "--since", "1h")
    assert ran.code == 0, ran.err
    assert "PaymentLinkPaid 1" in ran.out
    await results.wait_until(lambda _: results.of(link["f"])[-1:] == ["PaymentLinkPaid"], "the recovered payment")
    recovered = [e for e in results.events if e["payment_link_id"] == link["f"]][-1]
    assert recovered["source"] == "reconcile"
    again = await paylink(stack, "reconcile", "--since", "1h")
    assert "events none" in again.out, "a second run finds nothing missing"

    # The overdue scan, as the relay runs it, with a clock past every due date (14 days ahead).
    async with open_components(stack) as components:
        loop = build_scan_loop(components, clock=FakeClock(datetime.now(UTC) + timedelta(days=15)))
        await loop.run_once()
        assert loop.active and loop.passes == 1
        await loop.run_once()  # a second pass flags nothing twice
    open_links = {link[name] for name in "abcdeg"} - {link["f"]}
    await results.wait_until(
        lambda _: all("PaymentLinkOverdue" in results.of(i) for i in open_links), "overdue events of the open links"
    )
    for name in "abcdeg":
        assert results.of(link[name]).count("PaymentLinkOverdue") == 1
    assert "PaymentLinkOverdue" not in results.of(link["f"]), "a paid link is never overdue"
