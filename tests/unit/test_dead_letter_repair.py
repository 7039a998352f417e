"""Dead-letter repair: validated like the worker's intake, re-sent with the original key and headers minus
the stale ones, marked retried once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consumer.app.dead_letter_repair import RETRIED_FROM, Verdict, retry_dead_letter, retry_headers
from domain.stored import DeadLetter
from tests.fakes.dead_letters import FakeDeadLetters
from tests.fakes.world import REQUEST_ID, request_document

NOW = datetime(2030, 1, 15, 9, 30, tzinfo=UTC)
HEADERS = (("x-origin", b"crm"), ("traceparent", b"00-abc-def-01"), ("CE_ID", b"old"))


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    async def __call__(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.messages.append((topic, value, key, headers))


async def letter(letters: FakeDeadLetters, raw: bytes) -> str:
    return await letters.record(
        topic="req", partition=2, offset=9, raw=raw, reason="invalid_event", message="bad", key=b"k", headers=HEADERS
    )


async def test_a_valid_letter_is_resent_with_its_key_and_fresh_headers_then_marked() -> None:
    letters, sent = FakeDeadLetters(), Sent()
    raw = json.dumps(request_document()).encode()
    letter_id = await letter(letters, raw)

    outcome = await retry_dead_letter(letters, letter_id, sent, NOW)

    assert (outcome.verdict, outcome.event_id) == (Verdict.SENT, REQUEST_ID)
    expected_headers = [("x-origin", b"crm"), (RETRIED_FROM, b"req:2:9")]
    assert sent.messages == [("req", raw, b"k", expected_headers)]
    stored = await letters.get(letter_id)
    assert stored is not None and (stored.retried_as, stored.retried_at) == (REQUEST_ID, NOW)

    again = await retry_dead_letter(letters, letter_id, sent, NOW)
    assert (again.verdict, again.event_id, len(sent.messages)) == (Verdict.ALREADY_RETRIED, REQUEST_ID, 1)


async def test_an_edit_replaces_the_bytes_and_an_invalid_one_sends_nothing() -> None:
    letters, sent = FakeDeadLetters(), Sent()
    letter_id = await letter(letters, b"not json")

    refused = await retry_dead_letter(letters, letter_id, sent, NOW)
    assert refused.verdict is Verdict.INVALID and refused.problem is not None and "invalid_event" in refused.problem
    bad_edit = json.dumps(request_document(currency="xyz")).encode()
    assert (await retry_dead_letter(letters, letter_id, sent, NOW, edited=bad_edit)).verdict is Verdict.INVALID

    fixed = json.dumps(request_document(event_id="7e1d2c3b-4a59-4867-9f8e-1d2c3b4a5968")).encode()
    dry = await retry_dead_letter(letters, letter_id, sent, NOW, edited=fixed, dry_run=True)
    assert (dry.verdict, dry.value, sent.messages) == (Verdict.WOULD_SEND, fixed, [])
    assert (await letters.get(letter_id)).retried_as is None  # type: ignore[union-attr]

    done = await retry_dead_letter(letters, letter_id, sent, NOW, edited=fixed)
    assert (done.verdict, done.event_id) == (Verdict.SENT, "7e1d2c3b-4a59-4867-9f8e-1d2c3b4a5968")
    assert [message[1] for message in sent.messages] == [fixed]


async def test_an_unknown_letter_is_not_found() -> None:
    assert (await retry_dead_letter(FakeDeadLetters(), "req:0:0", Sent(), NOW)).verdict is Verdict.NOT_FOUND


async def test_a_concurrent_retry_is_reported_as_already_retried() -> None:
    letters = FakeDeadLetters()
    letter_id = await letter(letters, json.dumps(request_document()).encode())

    async def racing_send(topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        await letters.mark_retried(letter_id, "someone-else", NOW)  # the other retry marks it first

    outcome = await retry_dead_letter(letters, letter_id, racing_send, NOW)
    assert (outcome.verdict, outcome.event_id) == (Verdict.ALREADY_RETRIED, "someone-else")


def test_stale_headers_are_dropped_case_insensitively_and_a_previous_retry_mark_replaced() -> None:
    old = DeadLetter("t:0:1", "t", 0, 1, b"", "r", "m", None, None, NOW, 1, None,
                     (("tracestate", b"x"), ("ce_time", b"t"), (RETRIED_FROM, b"t:0:0"), ("keep", b"1")))  # fmt: skip
    assert retry_headers(old) == [("keep", b"1"), (RETRIED_FROM, b"t:0:1")]
