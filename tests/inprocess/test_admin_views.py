"""DescribeTopicPartitions paging, ElectLeaders' answers and DescribeLogDirs' sizes, through the dispatcher.

The Java tier (``tests/java``) drives these APIs with the real AdminClient;
these cover what it rarely reaches: pages cut by ``response_partition_limit``
and resumed from the cursor, unknown names, a partition's size after a write.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kio.schema.describe_topic_partitions.v0.request import Cursor
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32

from floe_broker.dispatch import Dispatcher
from tests.infra.batches import record_batch
from tests.inprocess.test_core import create_topic, produce
from tests.inprocess.wire import call, request

DESCRIBE_TOPIC_PARTITIONS, ELECT_LEADERS, DESCRIBE_LOG_DIRS = 75, 43, 35


async def page(d: Dispatcher, limit: int, cursor: Cursor | None, *names: str) -> Any:
    body = request(DESCRIBE_TOPIC_PARTITIONS, 0, topics=[{"name": n} for n in names], response_partition_limit=limit)
    return await call(d, DESCRIBE_TOPIC_PARTITIONS, 0, dataclasses.replace(body, cursor=cursor))


async def test_describe_topic_partitions_pages_with_a_cursor(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "a", 3)
    await create_topic(dispatcher, "b", 2)
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(5):
        got = await page(dispatcher, 2, cursor, "b", "a")
        for t in got.topics:
            assert t.error_code == ErrorCode.none and not t.is_internal
            for p in t.partitions:
                assert p.replica_nodes == p.isr_nodes == (p.leader_id,)
            seen += [(t.name, p.partition_index) for p in t.partitions]
        if got.next_cursor is None:
            break
        cursor = Cursor(topic_name=got.next_cursor.topic_name, partition_index=i32(got.next_cursor.partition_index))
    assert seen == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]  # name order, each partition once


async def test_describe_topic_partitions_names_an_unknown_topic(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "known", 1)
    got = await page(dispatcher, 2000, None, "known", "missing")
    codes = {t.name: t.error_code for t in got.topics}
    assert codes == {"known": ErrorCode.none, "missing": ErrorCode.unknown_topic_or_partition}
    everything = await page(dispatcher, 2000, None)
    assert [t.name for t in everything.topics] == ["known"]


async def test_elect_leaders_is_not_needed_and_unknown_partitions_are_named(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "e", 2)
    got = await call(dispatcher, ELECT_LEADERS, 2, request(
        ELECT_LEADERS, 2, election_type=0, topic_partitions=[{"topic": "e", "partitions": [0, 1, 5]},
                                                             {"topic": "nope", "partitions": [0]}]))
    codes = {(t.topic, p.partition_id): p.error_code for t in got.replica_election_results for p in t.partition_result}
    assert codes == {("e", 0): ErrorCode.election_not_needed, ("e", 1): ErrorCode.election_not_needed,
                     ("e", 5): ErrorCode.unknown_topic_or_partition, ("nope", 0): ErrorCode.unknown_topic_or_partition}
    everything = await call(dispatcher, ELECT_LEADERS, 2, request(ELECT_LEADERS, 2, election_type=0,
                                                                  topic_partitions=None))
    assert everything.error_code == ErrorCode.none and everything.replica_election_results == ()


async def test_describe_log_dirs_counts_the_bytes_of_a_led_partition(dispatcher: Dispatcher) -> None:
    await create_topic(dispatcher, "sized", 2)
    batch = record_batch()
    code, _ = await produce(dispatcher, "sized", 1, batch)
    assert code == ErrorCode.none
    got = await call(dispatcher, DESCRIBE_LOG_DIRS, 4, request(DESCRIBE_LOG_DIRS, 4, topics=[
        {"topic": "sized", "partitions": [0, 1, 9]}]))
    (result,) = got.results
    assert result.log_dir == "memory://" and result.total_bytes == -1
    (topic,) = result.topics
    sizes = {p.partition_index: p.partition_size for p in topic.partitions}
    assert sizes == {0: 0, 1: len(batch)}
