"""Kafka's Java consumer on the classic group protocol: assignors, static membership, positions, commits."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerFactory, StoreSpec
from tests.java import tier
from tests.java.conftest import Java, module_store


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "sticky", "cooperative-sticky"])
def test_two_share_the_partitions_and_the_survivor_takes_all(java: Java, brokers: BrokerFactory,
                                                             file_store: StoreSpec, assignor: str) -> None:
    b = brokers(file_store)
    name = f"ja-{uuid.uuid4().hex[:6]}"
    verdict = java("consumer-assignor", b.bootstrap, name, f"g-{name}", assignor)
    assert "fatal" not in verdict, verdict
    shared, after = verdict["shared"], verdict["after_leave"]
    assert shared["ok"], shared
    assert len(shared["a"]) == len(shared["b"]) == 3, shared  # every one of these assignors balances 6 over 2
    assert after["ok"] and len(after["a"]) == 6, after
    if assignor == "cooperative-sticky":
        assert after["kept_revoked"] == [], "a cooperative rebalance must not revoke what the survivor keeps"
    assert verdict["consumed"] == 120, verdict  # each record once, across the rebalance


def test_static_member_comes_back_to_its_partitions(java: Java, brokers: BrokerFactory,
                                                    file_store: StoreSpec) -> None:
    b = brokers(file_store)
    name = f"js-{uuid.uuid4().hex[:6]}"
    verdict = java("consumer-static", b.bootstrap, name, f"g-{name}")
    assert "fatal" not in verdict, verdict
    assert verdict["first_join"]["ok"] and verdict["rejoin"]["ok"], verdict
    assert verdict["rejoin"]["same"], verdict
    assert verdict["describe"] == {"ok": True, "members": 1, "instance_ids": ["static-1"]}, verdict


@pytest.fixture(scope="module")
def positions(java_tier: Path, module_brokers: BrokerFactory,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the positions scenario (one batch of 100 records, record 40 the newest) per client line."""
    b = module_brokers(module_store(tmp_path_factory))
    name = f"jp-{uuid.uuid4().hex[:6]}"
    verdict = tier.run(java_tier, "consumer-positions", b.bootstrap, name, f"g-{name}")
    assert "fatal" not in verdict, verdict
    return verdict


def test_seek_and_end_offsets(positions: dict[str, Any]) -> None:
    assert positions["seek"] == {"ok": True, "first_after_seek_50": 50, "beginning": 0, "end": 100}


def test_offsets_for_times_finds_the_record_inside_a_batch(positions: dict[str, Any]) -> None:
    times = positions["offsets_for_times"]
    assert times["ok"], times
    assert (times["at_30"], times["between_30_31"], times["future_is_null"]) == (30, 31, True), times


def test_offsets_for_times_gives_the_records_own_timestamp(positions: dict[str, Any]) -> None:
    assert positions["offsets_for_times"]["ts_30"] == 30_000, positions["offsets_for_times"]


def test_max_timestamp_names_the_newest_record(positions: dict[str, Any]) -> None:
    assert positions["max_timestamp"] == {"ok": True, "offset": 40, "timestamp": 500_000}, positions


def test_commit_sync_and_async(positions: dict[str, Any]) -> None:
    assert positions["commit_sync"] == {"ok": True, "committed": 42, "metadata": "sync"}
    assert positions["commit_async"] == {"ok": True, "callback": "ok", "committed": 77}
