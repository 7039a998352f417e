"""A created link on the fakes, and cancels of it: the setup the cancel unit tests share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.cancel import LinkCanceller
from domain.cancel_events import PaymentLinkCancelRejected, PaymentLinkCancelRequested
from domain.events import PaymentLinkCreated
from domain.lifecycle import InvoiceSnapshot, Observation
from domain.lifecycle_events import Source
from domain.lifecycle_service import LinkLifecycle
from tests.fakes.cancels import FakeCancelStore, canceller_for
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import ACCOUNT, CONTACT, STRIPE_ACCOUNT, World, make_request, new_request_id, run_like_worker


@dataclass
class Link:
    world: World
    lifecycles: FakeLifecycleStore
    cancels: FakeCancelStore
    created: PaymentLinkCreated

    def canceller(self) -> LinkCanceller:
        """A canceller on the same fakes (a restarted process when called again)."""
        return canceller_for(self.world, self.lifecycles, self.cancels)

    def cancel(self, **changes: Any) -> PaymentLinkCancelRequested:
        fields: dict[str, Any] = {
            "event_id": new_request_id(),
            "event_type": "PaymentLinkCancelRequested",
            "schema_version": 1,
            "occurred_at": self.world.clock.now(),
            "correlation_id": "corr-cancel",
            "account_id": ACCOUNT,
            "payment_link_id": changes.pop("payment_link_id", None) or self.created.payment_link_id,
            "contact_id": CONTACT,
            "reason": "wrong amount",
        }
        return PaymentLinkCancelRequested.model_validate({**fields, **changes})

    @property
    def invoice_status(self) -> str:
        return self.world.billing.invoices[self.created.invoice_id].status

    def set_invoice_status(self, status: Any) -> None:
        self.world.billing.invoices[self.created.invoice_id].status = status

    @property
    def void_calls(self) -> list[tuple[str, str]]:
        return [used for used in self.world.billing.keys_used if used[0] == "void_invoice"]

    def events(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.world.outbox.ordered if isinstance(event, kind)]

    def webhook(self, status: str = "void", event_id: str = "evt_void") -> Observation:
        return Observation(
            snapshot=InvoiceSnapshot(
                invoice_id=self.created.invoice_id, status=status, payment_link_id=self.created.payment_link_id
            ),
            stripe_account=STRIPE_ACCOUNT,
            source=Source.WEBHOOK,
            occurred_at=self.world.clock.now(),
            stripe_event_id=event_id,
            stripe_event_type=f"invoice.{'voided' if status == 'void' else status}",
        )

    def lifecycle(self) -> LinkLifecycle:
        world = self.world
        return LinkLifecycle(sagas=world.store, store=self.lifecycles, outbox=world.outbox, clock=world.clock)


async def created_link() -> Link:
    world = World()
    created = await run_like_worker(world.saga(), make_request())
    assert isinstance(created, PaymentLinkCreated)
    return Link(world, FakeLifecycleStore(), FakeCancelStore(), created)


def rejection(result: object) -> PaymentLinkCancelRejected:
    assert isinstance(result, PaymentLinkCancelRejected), result
    return result
