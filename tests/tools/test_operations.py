"""kafka-reassign-partitions, kafka-get-offsets, kafka-leader-election and kafka-log-dirs."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from tests.infra.broker import BrokerProcess
from tests.infra.kafka_tools import ok, tool
from tests.test_clients import produce_all


@pytest.fixture
def topic(bootstrap: str) -> str:
    """Four partitions, partition p holding p + 1 records (written with librdkafka: the tools under test read)."""
    name = f"ko-{uuid.uuid4().hex[:6]}"
    ok("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", name, "--partitions", "4")
    produce_all(bootstrap, [(name, p, None, f"r{i}".encode(), None, None) for p in range(4) for i in range(p + 1)])
    return name


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    out = ok("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic)
    return {int(p): int(leader) for p, leader in re.findall(r"Partition: (\d+)\tLeader: (\d+)", out)}


def offsets(bootstrap: str, topic: str, time: str) -> dict[int, int]:
    out = ok("kafka-get-offsets", "--bootstrap-server", bootstrap, "--topic", topic, "--time", time)
    return {int(p): int(o) for p, o in re.findall(rf"^{topic}:(\d+):(-?\d+)$", out, re.M)}


def test_get_offsets_latest_earliest_and_max_timestamp(bootstrap: str, topic: str) -> None:
    latest = offsets(bootstrap, topic, "-1")
    assert sum(latest.values()) == 10 and sorted(latest.values()) == [1, 2, 3, 4], latest
    assert offsets(bootstrap, topic, "-2") == {0: 0, 1: 0, 2: 0, 3: 0}
    assert offsets(bootstrap, topic, "earliest") == {0: 0, 1: 0, 2: 0, 3: 0}
    # max timestamp: a partition's newest record; answered for every partition that has one
    assert set(offsets(bootstrap, topic, "-3")) == {0, 1, 2, 3}


def test_reassign_generate_execute_and_verify(bootstrap: str, cluster: list[BrokerProcess], topic: str,
                                              tmp_path: Path) -> None:
    nodes = sorted({b["node_id"] for b in cluster[0].get("/v1/cluster")[1]["brokers"]})
    move = tmp_path / "move.json"
    move.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
    out = ok("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--generate",
             "--topics-to-move-json-file", str(move), "--broker-list", str(nodes[-1]))
    proposed = json.loads(out.split("Proposed partition reassignment configuration")[1].strip().splitlines()[0])
    assert {p["partition"]: p["replicas"] for p in proposed["partitions"]} == {p: [nodes[-1]] for p in range(4)}

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(proposed))
    out = ok("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--execute",
             "--reassignment-json-file", str(plan))
    assert "Successfully started partition reassignments" in out, out
    assert leaders(bootstrap, topic) == {p: nodes[-1] for p in range(4)}  # moves are metadata: done already
    out = ok("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--verify", "--preserve-throttles",
             "--reassignment-json-file", str(plan))
    assert all(f"Reassignment of partition {topic}-{p} is completed." in out for p in range(4)), out
    # the data moved with the leadership
    assert sum(offsets(bootstrap, topic, "-1").values()) == 10


def test_reassign_verify_clears_throttles(bootstrap: str, topic: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    node = leaders(bootstrap, topic)[0]
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0, "replicas": [node]}]}))
    ok("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--execute", "--reassignment-json-file", str(plan))
    ok("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--verify", "--reassignment-json-file", str(plan))


def test_leader_election_finds_nothing_to_elect(bootstrap: str, topic: str) -> None:
    out = ok("kafka-leader-election", "--bootstrap-server", bootstrap, "--election-type", "preferred",
             "--topic", topic, "--partition", "0")
    assert f"Valid replica already elected for partitions {topic}-0" in out, out
    everything = tool("kafka-leader-election", "--bootstrap-server", bootstrap, "--election-type", "preferred",
                      "--all-topic-partitions")
    assert everything.returncode == 0, everything.stderr
    unclean = ok("kafka-leader-election", "--bootstrap-server", bootstrap, "--election-type", "unclean",
                 "--topic", topic, "--partition", "1")
    assert f"Valid replica already elected for partitions {topic}-1" in unclean, unclean


def test_log_dirs_name_the_store_with_partition_sizes(bootstrap: str, cluster: list[BrokerProcess],
                                                      topic: str) -> None:
    out = ok("kafka-log-dirs", "--bootstrap-server", bootstrap, "--describe", "--topic-list", topic)
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    sizes: dict[str, int] = {}
    for broker in report["brokers"]:
        (log_dir,) = broker["logDirs"]
        assert log_dir["logDir"] == cluster[0].storage and log_dir["error"] is None, log_dir
        for p in log_dir["partitions"]:
            assert p["offsetLag"] == 0 and p["isFuture"] is False, p
            sizes[p["partition"]] = p["size"]
    assert sorted(sizes) == [f"{topic}-{p}" for p in range(4)], sizes  # each partition once, at its leader
    assert all(size > 0 for size in sizes.values()), sizes
    assert sizes[f"{topic}-3"] > sizes[f"{topic}-0"], sizes  # 4 records against 1
