"""The Java consumer on a compacted topic: the last value per key at its original offset, across the gaps.

confluent-kafka writes three rounds of values for 30 keys and a fourth for the even keys only;
the broker compacts every 200 ms round (``--compact-after-ms 0``). Once compaction has left one
record per key, the Java consumer reads the partition from its start on each client line: each
key's last value at the offset it was written at, offsets rising with gaps where superseded
records were, its position at the end offset after the last record; and a seek to a removed
offset lands on the next record still there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.compaction.test_clients import EAGER, FAST, compacted_to, last_per_key, produce
from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import BrokerProcess, wait_until
from tests.java.conftest import Java, module_store
from tests.test_clients import create_topic

KEYS, ROUNDS = 30, 3
Compacted = tuple[BrokerProcess, str, dict[bytes, tuple[int, bytes | None]]]
END = KEYS * ROUNDS + KEYS // 2 + 1  # the rounds, the even keys' last round, the tail


@pytest.fixture(scope="module")
def compacted(module_brokers: BrokerFactory, tmp_path_factory: pytest.TempPathFactory) -> Compacted:
    store: StoreSpec = module_store(tmp_path_factory)
    b = module_brokers(store, *FAST)
    topic = f"jcmp-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 1, EAGER)
    written: list[Any] = []
    for rnd in range(ROUNDS):
        written += produce(b.bootstrap, topic, [(b"key-%02d" % k, b"v%d-%d" % (k, rnd)) for k in range(KEYS)])
    # the odd keys keep round 2's values between removed offsets: gaps inside the log, not only before it
    written += produce(b.bootstrap, topic, [(b"key-%02d" % k, b"v%d-last" % k) for k in range(0, KEYS, 2)])
    written += produce(b.bootstrap, topic, [(b"tail", b"t")])  # the active segment's record: keys before it compact
    expected = last_per_key(written)
    wait_until(lambda: compacted_to(b.bootstrap, topic, expected), 60, 0.5, "one record per key")
    return b, topic, expected


def test_java_consumer_reads_the_compacted_log(java: Java, compacted: Compacted) -> None:
    b, topic, expected = compacted
    gap = expected[b"key-03"][0] - 1  # round 2's key-02: superseded by the last round, so removed
    verdict = java("compacted-read", b.bootstrap, topic, str(gap))
    assert "fatal" not in verdict, verdict
    read = verdict["read_all"]
    assert read["ok"], read
    want = sorted([o, k.decode(), (v or b"<null>").decode()] for k, (o, v) in expected.items())
    assert read["records"] == want
    offsets = [r[0] for r in read["records"]]
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False) if b - a > 1]
    assert offsets[0] > 0 and gaps, "no gap to read across"
    assert (read["beginning"], read["end"], read["position"]) == (0, END, END)
    seek = verdict["seek_into_gap"]
    assert seek["ok"], seek
    assert (seek["first_offset"], seek["key"]) == (expected[b"key-03"][0], "key-03")
