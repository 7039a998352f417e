"""The ``lifecycle_*`` invariants catch what they are for: each broken promise, in a synthetic observation
(no services), fails its check, and a clean story passes them all."""

from __future__ import annotations

from typing import Any

import pytest

from domain.lifecycle_events import Transition, lifecycle_event_id
from tests.integration.harness import Tenant
from tests.reliability.invariants import PLACE, Check, Observation, check_all
from tests.reliability.workload import World

LINK = "11111111-1111-4111-8111-111111111111"
OWNER = {"account_id": "acc-a", "contact_id": "con-a", "stripe_account": "acct_a", "invoice_id": "in_a"}
FAILED_EVENT = "evt_failed_1"
CREATED_AT = 5  # the PaymentLinkCreated's offset on the topic


def _event(kind: str, transition: Transition, offset: int, **changes: Any) -> dict[str, Any]:
    occurrence = FAILED_EVENT if transition is Transition.PAYMENT_FAILED else None
    event = {
        "event_id": lifecycle_event_id(LINK, transition, occurrence),
        "event_type": kind,
        "payment_link_id": LINK,
        "source": "webhook",
        **OWNER,
        PLACE: (0, CREATED_AT + offset),  # offset 0 and below: before the link's PaymentLinkCreated
    }
    return {**event, **changes}


PAID = ("PaymentLinkPaid", Transition.PAID)
FAILED = ("PaymentLinkPaymentFailed", Transition.PAYMENT_FAILED)
UNCOLLECTIBLE = ("PaymentLinkUncollectible", Transition.UNCOLLECTIBLE)
OVERDUE = ("PaymentLinkOverdue", Transition.OVERDUE)
VOIDED = ("PaymentLinkVoided", Transition.VOIDED)


def _observe(lifecycle: list[dict[str, Any]], invoice_status: str = "paid", record_status: str = "paid") -> Observation:
    created = {"event_id": "res-1", "event_type": "PaymentLinkCreated", "payment_link_id": LINK, **OWNER}
    failed_event = {"id": FAILED_EVENT, "type": "invoice.payment_failed", "data": {"object": {"id": "in_a"}}}
    return Observation(
        sagas={LINK: {"_id": LINK, "status": "created", "result": created}},
        dead_letters={},
        contacts={},
        results=[{**created, PLACE: (0, CREATED_AT)}],
        unreadable_results=0,
        committed={},
        end_offsets={},
        stripe={"acct_a": {"invoice": [{"id": "in_a", "status": invoice_status, "metadata": {}}]}},
        probe_hits={},
        logs="",
        unexpected_exits=[],
        lifecycle=lifecycle,
        lifecycles={LINK: {"_id": LINK, "status": record_status, "history": [{"appended": True}]}},
        stripe_events={"acct_a": [failed_event]},
    )


def _lifecycle_checks(obs: Observation) -> dict[str, Check]:
    a, b, neighbour, unconnected = (Tenant(f"acc-{n}", f"acct_{n}") for n in "xyzu")
    world = World(a, b, neighbour, unconnected, {}, {})
    checks = check_all(world, [], "topic", obs)
    return {name: check for name, check in checks.items() if name.startswith("lifecycle_")}


def test_a_clean_story_with_redeliveries_holds_every_lifecycle_invariant() -> None:
    story = [_event(*FAILED, 1), _event(*UNCOLLECTIBLE, 2), _event(*OVERDUE, 3), _event(*PAID, 4), _event(*PAID, 5)]
    checks = _lifecycle_checks(_observe(story))
    assert all(check.held for check in checks.values()), {n: c.details for n, c in checks.items()}


@pytest.mark.parametrize(
    ("broken", "lifecycle", "statuses"),
    [
        ("lifecycle_once", [_event(*PAID, 1), _event(*PAID, 2, event_id="another-id")], ("paid", "paid")),
        ("lifecycle_once", [_event(*FAILED, 1, event_id=lifecycle_event_id(LINK, Transition.PAID))], ("open", "open")),
        ("lifecycle_once", [_event(*VOIDED, 1, payment_link_id="never-created")], ("open", "open")),
        ("lifecycle_forward", [_event(*PAID, 1), _event(*UNCOLLECTIBLE, 2)], ("paid", "paid")),
        ("lifecycle_forward", [_event(*VOIDED, 1), _event(*PAID, 2)], ("paid", "paid")),
        ("lifecycle_forward", [_event(*PAID, -1)], ("paid", "paid")),  # before its PaymentLinkCreated
        ("lifecycle_owner", [_event(*PAID, 1, stripe_account="acct_b")], ("paid", "paid")),
        ("lifecycle_owner", [_event(*PAID, 1, contact_id="con-b")], ("paid", "paid")),
        ("lifecycle_final", [_event(*UNCOLLECTIBLE, 1)], ("paid", "paid")),  # the payment was never published
        ("lifecycle_final", [_event(*PAID, 1)], ("void", "paid")),
        ("lifecycle_final", [_event(*PAID, 1)], ("paid", "open")),  # the record disagrees
    ],
)
def test_each_broken_promise_fails_its_invariant(
    broken: str, lifecycle: list[dict[str, Any]], statuses: tuple[str, str]
) -> None:
    checks = _lifecycle_checks(_observe(lifecycle, *statuses))
    failed = {name for name, check in checks.items() if not check.held}
    assert broken in failed, {n: c.details for n, c in checks.items()}
