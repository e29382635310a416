"""kafka-consumer-groups: list, describe with lag, reset offsets (earliest, datetime, shift-by), delete."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.infra.kafka_tools import ok


@pytest.fixture
def group(bootstrap: str) -> tuple[str, str]:
    """A 2-partition topic of 10 records per partition and a group that left with 3 committed on each.

    The console consumer reads everything, so both partitions have a position it commits: stopping
    after a few records can leave one partition without a valid position yet (still being looked up
    or validated with OffsetForLeaderEpoch), and the consumer commits nothing for it. Then the group
    is set back to offset 3 on each, the tool's own way.
    """
    topic, group = f"kg-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "2")
    lines = "".join(f"{p}:{i}\n" for i in range(10) for p in range(2))
    ok("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", topic, "--reader-property",
       "parse.key=true", "--reader-property", "key.separator=:", "--producer-property", "partitioner.class="
       "org.apache.kafka.clients.producer.RoundRobinPartitioner", stdin=lines)
    ok("kafka-console-consumer", "--bootstrap-server", bootstrap, "--topic", topic, "--group", group,
       "--from-beginning", "--max-messages", "20", "--timeout-ms", "60000")
    ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--group", group, "--topic", topic,
       "--reset-offsets", "--to-offset", "3", "--execute")
    return topic, group


def offsets(bootstrap: str, group: str) -> dict[int, tuple[int, int, int]]:
    """partition -> (current offset, log end offset, lag) from ``--describe``."""
    out = ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", group)
    rows = re.findall(rf"^{group}\s+\S+\s+(\d+)\s+(\d+|-)\s+(\d+)\s+(\d+|-)", out, re.M)
    return {int(p): (int(cur) if cur != "-" else -1, int(end), int(lag) if lag != "-" else -1)
            for p, cur, end, lag in rows}


def reset(bootstrap: str, group: str, topic: str, *how: str) -> dict[int, int]:
    out = ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--group", group, "--topic", topic,
             "--reset-offsets", *how, "--execute")
    return {int(p): int(o) for p, o in re.findall(rf"^{group}\s+{topic}\s+(\d+)\s+(\d+)", out, re.M)}


def test_list_and_describe_with_lag(bootstrap: str, group: tuple[str, str]) -> None:
    topic, g = group
    assert g in ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--list").split()
    got = offsets(bootstrap, g)
    assert sorted(got) == [0, 1]
    assert sum(cur for cur, _, _ in got.values()) == 6, got
    assert all(end == 10 and lag == end - cur for cur, end, lag in got.values()), got
    state = ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe", "--group", g, "--state")
    assert re.search(rf"{g}\s+\S+\s+\(\d+\)\s+\S+\s+Empty\s+0", state), state


def test_reset_to_earliest_to_datetime_and_shift_by(bootstrap: str, group: tuple[str, str]) -> None:
    topic, g = group
    assert reset(bootstrap, g, topic, "--to-earliest") == {0: 0, 1: 0}
    assert {p: cur for p, (cur, _, _) in offsets(bootstrap, g).items()} == {0: 0, 1: 0}
    assert reset(bootstrap, g, topic, "--shift-by", "4") == {0: 4, 1: 4}
    assert reset(bootstrap, g, topic, "--shift-by", "-1") == {0: 3, 1: 3}
    # every record was written moments ago: a datetime in the past resets to the first, one ahead to the end
    assert reset(bootstrap, g, topic, "--to-datetime", "2020-01-01T00:00:00.000") == {0: 0, 1: 0}
    assert reset(bootstrap, g, topic, "--to-datetime", "2099-01-01T00:00:00.000") == {0: 10, 1: 10}
    assert reset(bootstrap, g, topic, "--to-latest") == {0: 10, 1: 10}
    assert all(lag == 0 for _, _, lag in offsets(bootstrap, g).values())


def test_delete_offsets_then_the_group(bootstrap: str, group: tuple[str, str]) -> None:
    topic, g = group
    out = ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--delete-offsets", "--group", g,
             "--topic", f"{topic}:0")
    assert re.search(rf"{topic}\s+0\s+Successful", out), out
    assert sorted(offsets(bootstrap, g)) == [1]
    out = ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--delete", "--group", g)
    assert f"Deletion of requested consumer groups ('{g}') was successful." in out, out
    assert g not in ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--list").split()
