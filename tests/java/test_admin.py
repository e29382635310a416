"""Kafka's Java AdminClient against a two-broker Floe cluster, call by call.

One run of the ``admin`` scenario per client line; each test asserts one of
its steps, so a regression names the call a Java operator's tooling would see
fail.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BrokerFactory
from tests.infra.broker import BrokerProcess, wait_until
from tests.java import tier
from tests.java.conftest import module_store


@pytest.fixture(scope="module")
def cluster(module_brokers: BrokerFactory, tmp_path_factory: pytest.TempPathFactory) -> list[BrokerProcess]:
    store = module_store(tmp_path_factory)
    procs = [module_brokers(store), module_brokers(store)]
    wait_until(lambda: len(procs[0].get("/v1/cluster")[1].get("brokers", [])) == 2, 30, message="2 brokers")
    return procs


@pytest.fixture(scope="module")
def admin(java_tier: Path, cluster: list[BrokerProcess]) -> dict[str, Any]:
    name = f"jadm-{uuid.uuid4().hex[:6]}"
    verdict = tier.run(java_tier, "admin", cluster[0].bootstrap, name, f"g-{name}")
    assert "fatal" not in verdict, verdict
    return verdict


def ok(verdict: dict[str, Any], step: str) -> dict[str, Any]:
    result: dict[str, Any] = verdict[step]
    assert result["ok"], f"{step}: {result.get('error')}"
    return result


def requests_served(procs: list[BrokerProcess], api: str) -> float:
    total = 0.0
    for b in procs:
        for fam in text_string_to_metric_families(b.metrics_text()):
            total += sum(s.value for s in fam.samples if s.name == "floe_requests_total" and s.labels.get("api") == api)
    return total


def test_create_topics(admin: dict[str, Any]) -> None:
    assert ok(admin, "create_topics") == {"ok": True, "partitions": 3, "replication_factor": 1}


def test_describe_cluster(admin: dict[str, Any]) -> None:
    step = ok(admin, "describe_cluster")
    assert len(step["nodes"]) == 2 and step["controller"] in step["nodes"], step


def test_describe_topics_one_replica_in_sync(admin: dict[str, Any], java_tier: Path,
                                             cluster: list[BrokerProcess]) -> None:
    step = ok(admin, "describe_topics")
    assert step["internal"] is False and len(step["partitions"]) == 3
    for p in step["partitions"]:
        assert p["replicas"] == p["isr"] == [p["leader"]], p
    if java_tier.name.startswith("4."):  # 4.x describes through DescribeTopicPartitions, not Metadata
        assert requests_served(cluster, "describe_topic_partitions") >= 1


def test_list_offsets_earliest_latest_and_max_timestamp(admin: dict[str, Any]) -> None:
    step = ok(admin, "list_offsets")
    # partition 0 holds 10 records, one per batch; its offset 3 has the newest timestamp
    assert step == {"ok": True, "earliest": 0, "latest": 10, "max_timestamp_offset": 3, "max_timestamp": 50_000,
                    "for_timestamp": 3}


def test_create_partitions(admin: dict[str, Any]) -> None:
    assert ok(admin, "create_partitions")["partitions"] == 5


def test_alter_and_list_partition_reassignments(admin: dict[str, Any]) -> None:
    step = ok(admin, "reassign")
    assert step["from"] != step["to"] and step["leader_now"] == step["to"], step
    assert ok(admin, "list_reassignments")["ongoing"] == 0  # moves are metadata: done before the answer


def test_elect_leaders_is_not_needed(admin: dict[str, Any]) -> None:
    step = ok(admin, "elect_leaders")
    assert len(step["partitions"]) == 2
    for outcome in step["partitions"].values():
        assert outcome.startswith("org.apache.kafka.common.errors.ElectionNotNeededException"), outcome


def test_describe_log_dirs_names_the_store(admin: dict[str, Any], cluster: list[BrokerProcess]) -> None:
    step = ok(admin, "describe_log_dirs")
    assert sorted(step["dirs"]) == sorted(str(i) for i in ok(admin, "describe_cluster")["nodes"])
    assert all(dirs == [cluster[0].storage] for dirs in step["dirs"].values()), step
    assert step["topic_partitions"] == 5 and step["topic_bytes"] > 0, step  # 30 records, all in the store


def test_consumer_offsets_is_listed_as_internal(admin: dict[str, Any]) -> None:
    ok(admin, "commit_group")
    step = ok(admin, "list_topics")
    assert step["internal"] is True and step["has_topic"], step
    assert step["without_internal"] is False, "listTopics() without listInternal hides __consumer_offsets"


def test_consumer_groups_list_describe_alter_and_delete(admin: dict[str, Any]) -> None:
    assert ok(admin, "commit_group")["consumed"] == 30
    assert ok(admin, "list_groups")["has_group"]
    described = ok(admin, "describe_groups")
    assert described["state"] == "Empty" and described["members"] == 0, described
    assert ok(admin, "alter_group_offsets")["tp0"] == 1
    deleted = ok(admin, "delete_group_offsets")
    assert deleted["tp1_gone"] and deleted["tp0"] == 1, deleted
    assert ok(admin, "delete_groups")["still_listed"] is False


def test_delete_topics(admin: dict[str, Any]) -> None:
    assert ok(admin, "delete_topics")["still_listed"] is False
