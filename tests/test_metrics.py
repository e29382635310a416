"""The series the elastic-scaling scenario and the operator's rebalance loop read appear on
/metrics after real client traffic, and the per-partition ones disappear when per-partition
metrics are switched off."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.test_clients import consume_exactly, create_topic, produce_all


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(got: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return got.get((name, frozenset(labels.items())))


def test_data_path_series_after_produce_and_fetch(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store)
    topic = f"m-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, 2)
    produce_all(b.bootstrap, [(topic, p, None, b"x" * 100, None, None) for p in (0, 1) for _ in range(5)])
    assert len(consume_exactly(b.bootstrap, topic, 0, 0, 5)) == 5

    got = samples(b.metrics_text())
    assert value(got, "floe_records_in_total") == 10
    assert (value(got, "floe_records_out_total") or 0) >= 5
    assert (value(got, "floe_bytes_in_total") or 0) > 1000
    assert (value(got, "floe_bytes_out_total") or 0) > 500
    for p in ("0", "1"):
        assert value(got, "floe_partition_records_in_total", topic=topic, partition=p) == 5
        assert (value(got, "floe_partition_bytes_in_total", topic=topic, partition=p) or 0) > 500
        assert value(got, "floe_partition_high_watermark", topic=topic, partition=p) == 5
    assert (value(got, "floe_partition_records_out_total", topic=topic, partition="0") or 0) >= 5
    assert (value(got, "floe_partition_bytes_out_total", topic=topic, partition="0") or 0) > 500
    # The gauge counts the partitions this broker has open: the topic's two, plus whichever
    # __consumer_offsets partitions were opened once the consumer (it has a group.id) looked up its
    # coordinator; the broker leads the rest of them in metadata but opens them on first use.
    status, view = b.get("/v1/cluster")
    assert status == 200
    assert 2 <= (value(got, "floe_partitions_led") or 0) <= len(view["partitions"])
    assert value(got, "floe_broker_state", state="ready") == 1
    assert (value(got, "floe_requests_total", api="produce") or 0) >= 1
    assert (value(got, "floe_request_seconds_count", api="fetch") or 0) >= 1
    assert (value(got, "floe_wal_puts_total") or 0) >= 1


def test_per_partition_series_can_be_switched_off(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, "--per-partition-metrics", "false")
    topic = f"m-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, 1)
    produce_all(b.bootstrap, [(topic, 0, None, b"y" * 100, None, None)] * 3)
    assert len(consume_exactly(b.bootstrap, topic, 0, 0, 3)) == 3

    got = samples(b.metrics_text())
    assert value(got, "floe_records_in_total") == 3
    assert (value(got, "floe_records_out_total") or 0) >= 3
    assert not [name for name, labels in got if name.startswith("floe_partition_") and dict(labels).get("topic")]
