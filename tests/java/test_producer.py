"""Kafka's Java producer against Floe: idempotent (its default), acks=all, every codec, headers, big records.

Each scenario writes with the Java client and reads back with the Java
consumer, so what is asserted is what a Java application would see.
"""

from __future__ import annotations

import uuid

from tests.conftest import BrokerFactory, StoreSpec
from tests.java.conftest import Java

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def test_every_codec_with_headers_and_a_one_mib_record(java: Java, brokers: BrokerFactory,
                                                       file_store: StoreSpec) -> None:
    b = brokers(file_store)
    verdict = java("produce-features", b.bootstrap, f"jf-{uuid.uuid4().hex[:6]}")
    assert "fatal" not in verdict, verdict
    for codec in CODECS:
        step = verdict[f"codec_{codec}"]
        assert step["ok"], step
        assert step["sent"] == step["consumed"] == step["values_ok"] == step["headers_ok"] == 200, step
    big = verdict["one_mib_record"]
    assert big["ok"] and big["consumed"] == 1 and big["same_bytes"], big


def test_two_hundred_partitions(java: Java, brokers: BrokerFactory, file_store: StoreSpec) -> None:
    b = brokers(file_store)
    verdict = java("produce-many-partitions", b.bootstrap, f"jm-{uuid.uuid4().hex[:6]}", "200")
    assert "fatal" not in verdict, verdict
    assert verdict["create"]["ok"], verdict["create"]
    assert verdict["produce"] == {"ok": True, "acked": 1000}, verdict["produce"]
    assert verdict["consume"] == {"ok": True, "consumed": 1000, "partitions_exact": 200, "misplaced": 0}
