"""The ``cancel_*`` and ``void_once`` invariants catch what they are for: each broken promise, in a synthetic
observation (no services), fails its check, and a clean story (with a retryable rejection replayed, a
duplicate re-delivery, a foreign tenant's cancel rejected) passes them all."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from domain.lifecycle_events import Transition, lifecycle_event_id
from tests.integration.harness import Tenant
from tests.reliability.invariants import PLACE, Check, Observation, check_all
from tests.reliability.workload import Sent, World

LINK = "11111111-1111-4111-8111-111111111111"
OTHER_LINK = "22222222-2222-4222-8222-222222222222"
OWN = "33333333-3333-4333-8333-333333333333"  # the link's own tenant's cancel: voids it
FOREIGN = "44444444-4444-4444-8444-444444444444"  # another tenant's cancel of the link
OWNER = {"account_id": "acc-a", "contact_id": "con-a", "stripe_account": "acct_a", "invoice_id": "in_a"}
VOIDED_ID = lifecycle_event_id(LINK, Transition.VOIDED)


def _cancel(event_id: str, account: str, allowed: set[str], offset: int, link: str = LINK) -> Sent:
    return Sent(
        "cancel",
        b"{}",
        b"con-a",
        True,
        event_id,
        None,
        account_id=account,
        contact_id="con-a",
        partition=0,
        offset=offset,
        cancel_of=link,
        allowed=frozenset(allowed),
    )


def _rejected(cancel_id: str, reason: str, offset: int, *, retryable: bool = False, attempt: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"rej-{cancel_id[:4]}-{attempt}-{reason}",
        "event_type": "PaymentLinkCancelRejected",
        "payment_link_id": LINK,
        "cancel_request_id": cancel_id,
        "reason": reason,
        "retryable": retryable,
        "attempt": attempt,
        "message": reason,
        PLACE: (0, offset),
    }


def _voided(cancel_id: str, offset: int) -> dict[str, Any]:
    return {
        "event_id": VOIDED_ID,
        "event_type": "PaymentLinkVoided",
        "payment_link_id": LINK,
        "source": "cancel",
        "cancel_request_id": cancel_id,
        **OWNER,
        PLACE: (0, offset),
    }


def _void_event(key: str) -> dict[str, Any]:
    return {
        "id": f"evt_{key[-8:]}",
        "type": "invoice.voided",
        "data": {"object": {"id": "in_a", "status": "void"}},
        "request": {"id": "req_1", "idempotency_key": key},
    }


def _story() -> tuple[list[Sent], Observation]:
    """Own cancel: gave up (retryable), replayed, voided, re-delivered; a foreign cancel: not found."""
    created = {"event_id": "res-1", "event_type": "PaymentLinkCreated", "payment_link_id": LINK, **OWNER}
    gave_up = _rejected(OWN, "stripe_unavailable", 6, retryable=True)
    voided = _voided(OWN, 8)
    foreign = _rejected(FOREIGN, "payment_link_not_found", 7)
    sent = [
        _cancel(OWN, "acc-a", {"voided"}, 1),
        _cancel(FOREIGN, "acc-b", {"payment_link_not_found"}, 2),
        _cancel(OWN, "acc-a", {"voided"}, 3),  # a duplicate
    ]
    obs = Observation(
        sagas={LINK: {"_id": LINK, "status": "created", "result": created}},
        dead_letters={},
        contacts={},
        results=[{**created, PLACE: (0, 5)}],
        unreadable_results=0,
        committed={},
        end_offsets={},
        stripe={"acct_a": {"invoice": [{"id": "in_a", "status": "void", "metadata": {}}]}},
        probe_hits={},
        logs="",
        unexpected_exits=[],
        lifecycle=[voided, {**voided, PLACE: (0, 9)}],
        lifecycles={LINK: {"_id": LINK, "status": "void", "history": [{"appended": True}]}},
        stripe_events={"acct_a": [_void_event(f"paylink-cancel-{OWN}-void")]},
        cancel_results=[gave_up, foreign],
        cancels={
            OWN: {"_id": OWN, "status": "done", "result": {k: v for k, v in voided.items() if k != PLACE}},
            FOREIGN: {"_id": FOREIGN, "status": "done", "result": {k: v for k, v in foreign.items() if k != PLACE}},
        },
    )
    return sent, obs


def _checks(sent: list[Sent], obs: Observation) -> dict[str, Check]:
    a, b, neighbour, unconnected = (Tenant(f"acc-{n}", f"acct_{n}") for n in "abzu")
    checks = check_all(World(a, b, neighbour, unconnected, {}, {}), sent, "topic", obs)
    return {name: check for name, check in checks.items() if name.startswith(("cancel_", "void_", "lifecycle_"))}


def test_a_clean_story_holds_every_cancel_invariant() -> None:
    checks = _checks(*_story())
    assert all(check.held for check in checks.values()), {n: c.details for n, c in checks.items()}


def _second_void_in_stripe(sent: list[Sent], obs: Observation) -> None:
    obs.stripe_events["acct_a"].append(_void_event(f"paylink-cancel-{OWN}-void"))


def _voided_by_the_foreign_cancel(sent: list[Sent], obs: Observation) -> None:
    obs.stripe_events["acct_a"] = [_void_event(f"paylink-cancel-{FOREIGN}-void")]


def _voided_under_no_cancel_key(sent: list[Sent], obs: Observation) -> None:
    obs.stripe_events["acct_a"] = [_void_event("paylink-0b6c6f4e-r0-void")]  # paylink voided it, no cancel did


def _voided_event_names_the_foreign_cancel(sent: list[Sent], obs: Observation) -> None:
    obs.lifecycle = [_voided(FOREIGN, 8)]
    obs.cancel_results = [r for r in obs.cancel_results if r["cancel_request_id"] != FOREIGN]
    obs.cancels[FOREIGN]["result"] = {k: v for k, v in _voided(FOREIGN, 8).items() if k != PLACE}


def _voided_but_invoice_open(sent: list[Sent], obs: Observation) -> None:
    obs.stripe["acct_a"]["invoice"][0]["status"] = "open"


def _two_distinct_final_results(sent: list[Sent], obs: Observation) -> None:
    obs.cancel_results.append(_rejected(OWN, "already_void", 10, attempt=2))


def _a_final_result_followed(sent: list[Sent], obs: Observation) -> None:
    obs.cancel_results[0] = _rejected(OWN, "stripe_unavailable", 6, retryable=False)


def _left_retryable(sent: list[Sent], obs: Observation) -> None:
    obs.lifecycle = []
    obs.stripe_events["acct_a"] = []
    obs.cancels[OWN]["result"] = {k: v for k, v in obs.cancel_results[0].items() if k != PLACE}


def _no_result(sent: list[Sent], obs: Observation) -> None:
    obs.cancel_results = [r for r in obs.cancel_results if r["cancel_request_id"] != FOREIGN]


def _stray_result(sent: list[Sent], obs: Observation) -> None:
    obs.cancel_results.append({**_rejected("55555555-5555-4555-8555-555555555555", "already_void", 11)})


def _record_disagrees(sent: list[Sent], obs: Observation) -> None:
    obs.cancels[FOREIGN]["result"] = {"event_id": "something-else"}


def _foreign_not_rejected_as_not_found(sent: list[Sent], obs: Observation) -> None:
    obs.cancel_results[1] = _rejected(FOREIGN, "already_void", 7)
    obs.cancels[FOREIGN]["result"] = {k: v for k, v in obs.cancel_results[1].items() if k != PLACE}


def _two_cancels_void_one_link(sent: list[Sent], obs: Observation) -> None:
    second = "66666666-6666-4666-8666-666666666666"
    sent.append(_cancel(second, "acc-a", {"voided", "already_void"}, 4))
    event = {**_voided(second, 12), "event_id": "another-voided-id"}
    obs.lifecycle.append(event)
    obs.cancels[second] = {"_id": second, "status": "done", "result": {k: v for k, v in event.items() if k != PLACE}}


@pytest.mark.parametrize(
    ("broken", "breaking"),
    [
        ("void_once", _second_void_in_stripe),
        ("void_once", _voided_by_the_foreign_cancel),
        ("void_once", _voided_under_no_cancel_key),
        ("void_once", _voided_event_names_the_foreign_cancel),
        ("void_once", _voided_but_invoice_open),
        ("cancel_answered", _two_distinct_final_results),
        ("cancel_answered", _a_final_result_followed),
        ("cancel_answered", _left_retryable),
        ("cancel_answered", _no_result),
        ("cancel_answered", _stray_result),
        ("cancel_answered", _record_disagrees),
        ("cancel_outcome", _foreign_not_rejected_as_not_found),
        ("cancel_outcome", _two_cancels_void_one_link),
    ],
)
def test_each_broken_promise_fails_its_invariant(
    broken: str, breaking: Callable[[list[Sent], Observation], None]
) -> None:
    sent, obs = _story()
    obs = copy.deepcopy(obs)
    breaking(sent, obs)
    checks = _checks(sent, obs)
    failed = {name for name, check in checks.items() if not check.held}
    assert broken in failed, {n: c.details for n, c in checks.items()}


def test_a_voided_cancel_needs_its_void_in_stripe() -> None:
    sent, obs = _story()
    obs.stripe_events["acct_a"] = []
    failed = {name for name, check in _checks(sent, obs).items() if not check.held}
    assert "void_once" in failed


def test_a_void_made_outside_paylink_is_not_judged() -> None:
    """Voided in Stripe's dashboard (no paylink idempotency key): what webhook_faults does on purpose."""
    sent, obs = _story()
    obs = copy.deepcopy(obs)
    sent = [cancel for cancel in sent if cancel.event_id != OWN]  # no cancel of the link: only the dashboard
    obs.lifecycle, obs.cancel_results = [], [r for r in obs.cancel_results if r["cancel_request_id"] != OWN]
    obs.cancels.pop(OWN)
    obs.stripe_events["acct_a"] = [_void_event("dashboard-key")]
    assert _checks(sent, obs)["void_once"].held
    obs.stripe_events["acct_a"] = [_void_event("paylink-0b6c6f4e-r0-void")]
    assert not _checks(sent, obs)["void_once"].held, "a void by paylink needs a cancel of the link's tenant"
