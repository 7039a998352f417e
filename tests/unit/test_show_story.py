"""``paylink show``'s story, gathered through the query ports from in-memory fakes, and its two renderings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consumer.app.show import ShowPorts, Story, find_story, result_event_ids, story_document
from consumer.cli.show import render_story
from domain.cancel_record import CancelRecord
from domain.errors import RetryableError
from domain.events import PaymentLinkCreated
from tests.fakes.cancels import FakeCancelStore
from tests.fakes.dead_letters import FakeDeadLetters
from tests.fakes.stores import FakeLifecycleStore
from tests.fakes.world import ACCOUNT, CONTACT, REQUEST_ID, World, make_request, run_like_worker

T0 = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
CANCEL_ID = "5d0f1c1e-7a0b-4e5e-8a8e-0c1d2e3f4a5b"


class Stores:
    def __init__(self, world: World) -> None:
        self.world = world
        self.cancels = FakeCancelStore()
        self.lifecycles = FakeLifecycleStore()
        self.letters = FakeDeadLetters()

    def ports(self) -> ShowPorts:
        return ShowPorts(self.world.store, self.cancels, self.lifecycles, self.world.outbox, self.letters)

    async def cancel(self, result: dict[str, object] | None = None) -> None:
        record = CancelRecord(
            cancel_request_id=CANCEL_ID,
            request={},
            payment_link_id=REQUEST_ID,
            account_id=ACCOUNT,
            contact_id=CONTACT,
            result=result,
            created_at=T0,
            updated_at=T0,
        )
        await self.cancels.create_if_absent(record)


async def test_a_payment_link_id_gathers_the_saga_its_results_and_its_dead_letters() -> None:
    world = World()
    world.billing.faults.add("finalize_invoice", RetryableError(message="finalize: 503"))
    result = await run_like_worker(world.saga(), make_request())
    stores = Stores(world)
    await stores.letters.record(topic="req", partition=0, offset=7, raw=b"{", reason="invalid_event", message="m",
                                event_id=REQUEST_ID)  # fmt: skip
    await stores.letters.record(topic="req", partition=0, offset=8, raw=b"{", reason="invalid_event", message="m")

    story = await find_story(stores.ports(), REQUEST_ID)

    assert story is not None and (story.found_as, story.payment_link_id) == ("payment_link", REQUEST_ID)
    assert story.saga == world.store.record(REQUEST_ID)
    assert [e.event_id for e in story.events] == [result.event_id] and not story.events[0].published
    assert [d.id for d in story.dead_letters] == ["req:0:7"], "only the letters of this request"
    text = render_story(story)
    assert text.startswith(f"PAYMENT LINK {REQUEST_ID}\n  status created, attempt 1")
    assert "retry" in text and "finalize: 503" in text and "invoice_id=" in text
    assert "PaymentLinkCreated" in text and "pending" in text and "req:0:7" in text
    document = json.loads(json.dumps(story_document(story)))
    assert document["events"][0]["event"]["event_id"] == result.event_id
    assert document["saga"]["history"]["entries"][-1]["kind"] == "result"


async def test_a_cancel_id_and_a_dead_letter_id_lead_to_their_link() -> None:
    world = World()
    await world.saga().run(make_request())
    stores = Stores(world)
    await stores.cancel(result={"event_id": "void-1", "event_type": "PaymentLinkVoided"})
    await stores.letters.record(topic="req", partition=1, offset=3, raw=b"x", reason="invalid_event", message="m",
                                event_id=CANCEL_ID)  # fmt: skip

    by_cancel = await find_story(stores.ports(), CANCEL_ID)
    by_letter = await find_story(stores.ports(), "req:1:3")

    for story, found_as in ((by_cancel, "cancel"), (by_letter, "dead_letter")):
        assert story is not None and (story.found_as, story.payment_link_id) == (found_as, REQUEST_ID)
        assert story.saga is not None and [c.cancel_request_id for c in story.cancels] == [CANCEL_ID]
        assert [d.id for d in story.dead_letters] == ["req:1:3"]
    assert by_cancel is not None and "(found from cancel " in render_story(by_cancel)
    assert by_cancel.saga is not None and by_cancel.saga.result is not None
    assert result_event_ids(by_cancel) == [by_cancel.saga.result.event_id, "void-1"]


async def test_a_dead_letter_without_a_saga_is_shown_alone_and_an_unknown_id_is_none() -> None:
    stores = Stores(World())
    await stores.letters.record(topic="req", partition=0, offset=1, raw=b"", reason="invalid_event", message="empty")

    story = await find_story(stores.ports(), "req:0:1")

    assert story is not None and (story.payment_link_id, story.saga, story.events) == (None, None, [])
    assert "PAYMENT LINK -" in render_story(story) and "no saga stored" in render_story(story)
    assert await find_story(stores.ports(), "nothing") is None


async def test_result_ids_come_from_every_attempt_once_each() -> None:
    world = World()
    world.billing.faults.add("finalize_invoice", RetryableError(message="503"), times=2)
    await run_like_worker(world.saga(), make_request(), attempts=2)
    replayed = await world.saga().replay(REQUEST_ID)
    assert isinstance(replayed, PaymentLinkCreated)
    story = Story(REQUEST_ID, "payment_link", REQUEST_ID, saga=world.store.record(REQUEST_ID))
    ids = result_event_ids(story)
    assert len(ids) == 2 and ids[-1] == replayed.event_id
    assert [e.event_id for e in await world.outbox.find_events(ids)] == ids
