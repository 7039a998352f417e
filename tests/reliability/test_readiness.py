"""The harness's waits (``tests.reliability.readiness``): issue #17's ``kafka_outage`` failed on the suite's
own producer (``LeaderNotAvailableError``) right after a slow Kafka restart. The waits must say "not yet"
for a topic whose partitions have no leader, "ready" once they have, and give up at their deadline."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.reliability.readiness import NotReady, missing_leaders, wait_kafka, wait_mongo, wait_until


def test_a_partition_without_a_leader_is_not_ready() -> None:
    described = [{"topic": "t", "error_code": 0, "partitions": [{"partition": 0, "leader": 1, "error_code": 0}]}]
    assert missing_leaders(described, ["t"]) is None
    no_leader = [{"topic": "t", "error_code": 0, "partitions": [{"partition": 0, "leader": -1, "error_code": 0}]}]
    assert missing_leaders(no_leader, ["t"]) == "topic t partition 0: no leader"
    leader_error = [{"topic": "t", "error_code": 0, "partitions": [{"partition": 2, "leader": 1, "error_code": 5}]}]
    assert missing_leaders(leader_error, ["t"]) == "topic t partition 2: no leader"
    assert missing_leaders([{"topic": "t", "error_code": 5, "partitions": []}], ["t"]) == "topic t: error 5"
    assert missing_leaders([{"topic": "t", "error_code": 0, "partitions": []}], ["t"]) == "topic t: no partitions yet"
    assert missing_leaders([], ["t"]) == "topic t: absent"


async def test_wait_until_polls_until_ready_and_counts_errors_as_not_ready() -> None:
    answers = iter([RuntimeError("restarting"), "leader missing", None])

    async def probe() -> str | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await wait_until(probe, "thing", timeout_s=10, interval_s=0.01) >= 0
    with pytest.raises(StopIteration):  # it stopped asking once ready
        next(answers)


async def test_wait_until_gives_up_at_its_deadline_with_the_last_detail() -> None:
    async def never() -> str | None:
        return "partition 1: no leader"

    started = time.monotonic()
    with pytest.raises(NotReady, match="partition 1: no leader"):
        await wait_until(never, "Kafka", timeout_s=0.3, interval_s=0.05)
    assert time.monotonic() - started < 5  # bounded by its deadline, not by the probe


@pytest.mark.integration
async def test_kafka_wait_sees_a_new_topic_get_its_leaders(kafka_bootstrap: str) -> None:
    topic = f"readiness-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotReady, match="absent"):
        await wait_kafka(kafka_bootstrap, [topic], timeout_s=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
        await wait_kafka(kafka_bootstrap, [topic], timeout_s=60)
        described = await admin.describe_topics([topic])
        assert missing_leaders(described, [topic]) is None
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@pytest.mark.integration
async def test_mongo_wait_needs_a_write_to_pass(mongodb_uri: str) -> None:
    base = mongodb_uri.rsplit("/", 1)[0] if mongodb_uri.count("/") > 2 else mongodb_uri
    await wait_mongo(base, timeout_s=30)
    with pytest.raises(NotReady):
        await wait_mongo("mongodb://127.0.0.1:1", timeout_s=1)
