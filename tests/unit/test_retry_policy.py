"""The one retry policy: the worker and ``paylink replay`` wait, log and count retries alike, and both
honour a dependency's ``Retry-After`` (``RetryableError.retry_after_s``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest

from consumer import metrics as paylink_metrics
from consumer.app.replay import Replayer, ReplaySelection, ReplayTally
from consumer.app.requests import RequestHandler
from consumer.app.retry import RetryPolicy
from domain.errors import Reason, RetryableError
from domain.events import PaymentLinkCreated, PaymentLinkFailed
from domain.ports import OutputEvent
from tests.fakes.world import REQUEST_ID, World, make_request, request_document

RETRY_AFTER_S = 7.5  # far above the policy's backoff ceiling, so a wait of exactly this is the hint's


@dataclass
class Waits:
    seconds: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class NoDeadLetters:
    async def record(self, **fields: object) -> str:
        raise AssertionError(f"nothing should be dead-lettered: {fields}")


def retries_counted() -> float:
    return (
        paylink_metrics.registry_of(paylink_metrics.ALL).get_sample_value(
            "paylink_retries_total", {"reason": "stripe_unavailable"}
        )
        or 0.0
    )


def rate_limited() -> RetryableError:
    return RetryableError(Reason.STRIPE_UNAVAILABLE, "Stripe answered 429", retry_after_s=RETRY_AFTER_S)


async def through_the_worker(world: World, policy: RetryPolicy) -> OutputEvent:
    handler = RequestHandler(world.saga(), NoDeadLetters(), policy)
    raw = json.dumps(request_document()).encode()
    await handler.handle(handler.prepare(Message("requests", 0, 0, b"contact", raw)))
    return world.outbox.ordered[-1]


async def through_replay(world: World, policy: RetryPolicy) -> OutputEvent:
    # First a run whose retries all fail: the saga ends failed, retryable, waiting for a replay.
    world.billing.faults.add("create_draft_invoice", rate_limited(), times=1)
    saga = world.saga()
    with pytest.raises(RetryableError):
        await saga.run(make_request())
    await saga.give_up(make_request(), rate_limited(), attempts=1)
    replayer = Replayer(world.saga(), world.store, policy, world.clock)
    (target,) = await replayer.targets(ReplaySelection(event_ids=[REQUEST_ID]))
    line = await replayer.replay_one(target, ReplayTally())
    assert line.startswith("created"), line
    return world.outbox.ordered[-1]


@pytest.mark.parametrize("path", [through_the_worker, through_replay], ids=["worker", "replay"])
async def test_a_rate_limited_call_waits_the_hint_then_succeeds_and_the_retry_is_logged_and_counted(
    path: object, caplog: pytest.LogCaptureFixture
) -> None:
    world, waits = World(), Waits()
    policy = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.001, sleep=waits)
    run = path if callable(path) else None
    assert run is not None
    before = retries_counted()
    world.billing.faults.add("finalize_invoice", rate_limited(), times=1)

    with caplog.at_level(logging.INFO, logger="paylink.retry"):
        result = await run(world, policy)

    assert isinstance(result, PaymentLinkCreated)
    assert waits.seconds == [RETRY_AFTER_S], "the one retry waited exactly what Stripe asked for"
    assert retries_counted() - before == 1
    (logged,) = [r for r in caplog.records if r.getMessage() == "transient failure; retrying"]
    assert (logged.payment_link_id, logged.reason, logged.retry_in_s) == (REQUEST_ID, "stripe_unavailable", 7.5)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", [through_the_worker, through_replay], ids=["worker", "replay"])
async def test_when_retries_run_out_the_saga_gives_up_retryably_after_the_same_number_of_attempts(
    path: object,
) -> None:
    world, waits = World(), Waits()
    policy = RetryPolicy(attempts=4, initial_s=0.001, max_s=0.001, sleep=waits)
    world.billing.faults.add("finalize_invoice", rate_limited(), times=None)
    run = path if callable(path) else None
    assert run is not None
    if run is through_replay:
        with pytest.raises(AssertionError, match="failed again"):
            await run(world, policy)
        result = world.outbox.ordered[-1]
    else:
        result = await run(world, policy)
    assert isinstance(result, PaymentLinkFailed)
    assert (result.reason, result.retryable) == ("stripe_unavailable", True)
    assert waits.seconds == [RETRY_AFTER_S] * 3, "4 attempts: 3 waits, each the hint"
    assert "gave up after 4 attempt(s)" in result.message
