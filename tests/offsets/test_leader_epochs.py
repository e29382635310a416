"""OffsetForLeaderEpoch and the current-leader-epoch checks, over real broker processes.

A partition's epoch history has to survive what changes its leader: a
metadata-only move (clean checkpoint) and a kill -9 (the successor recovers
from the dead session's WAL). The raw-frame test asks the exact questions a
consumer asks after each and checks Kafka's error codes; kafka-python 2.1+
validates its position with OffsetForLeaderEpoch after every leader change
and must keep consuming through both.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kio.schema.errors import ErrorCode

from tests.infra.broker import BrokerProcess, wait_until
from tests.inprocess.wire import request as build
from tests.security.kafka_wire import request as send
from tests.test_clients import create_topic, produce_all
from tests.test_cluster import cluster_view, post, start_cluster

FETCH, LIST_OFFSETS, OFFSET_FOR_LEADER_EPOCH = 1, 2, 23


def leader_and_epoch(b: BrokerProcess, topic: str) -> tuple[int, int]:
    p = next(p for p in cluster_view(b)["partitions"] if p["topic"] == topic and p["partition"] == 0)
    return int(p["leader"]), int(p["epoch"])


def proc_of(procs: list[BrokerProcess], node: int) -> BrokerProcess:
    http = next(x["http"] for x in cluster_view(procs[0])["brokers"] if x["node_id"] == node)
    return next(b for b in procs if b.http == http)


def move(procs: list[BrokerProcess], topic: str, to: int) -> int:
    """Move partition 0 to node ``to`` through the controller (procs[0]); the new epoch."""
    reply = post(procs[0].http, "/v1/reassignments", {"moves": [{"topic": topic, "partition": 0, "to": to}]})
    assert reply["results"][0]["error"] is None, reply
    leader, epoch = leader_and_epoch(procs[0], topic)
    assert leader == to
    return epoch


def epoch_end(b: BrokerProcess, topic: str, leader_epoch: int, current: int = -1, version: int = 4) -> Any:
    body = build(OFFSET_FOR_LEADER_EPOCH, version, replica_id=-1, topics=[{"topic": topic, "partitions": [
        {"partition": 0, "current_leader_epoch": current, "leader_epoch": leader_epoch}]}])
    resp = send(b.bootstrap, OFFSET_FOR_LEADER_EPOCH, version, body, client_id="epochs")
    p = resp.topics[0].partitions[0]
    return p.error_code, p.leader_epoch, p.end_offset


def fetch_code(b: BrokerProcess, topic: str, current: int) -> ErrorCode:
    body = build(FETCH, 12, replica_id=-1, max_wait=datetime.timedelta(milliseconds=10), min_bytes=1,
                 max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1, topics=[
                     {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20,
                                                      "current_leader_epoch": current, "log_start_offset": -1}]}])
    return ErrorCode(send(b.bootstrap, FETCH, 12, body, client_id="epochs").responses[0].partitions[0].error_code)


def list_offsets_code(b: BrokerProcess, topic: str, current: int) -> ErrorCode:
    body = build(LIST_OFFSETS, 7, replica_id=-1, isolation_level=0, topics=[{"name": topic, "partitions": [
        {"partition_index": 0, "current_leader_epoch": current, "timestamp": -1}]}])
    return ErrorCode(send(b.bootstrap, LIST_OFFSETS, 7, body, client_id="epochs").topics[0].partitions[0].error_code)


def produce(b: BrokerProcess, topic: str, n: int) -> None:
    produce_all(b.bootstrap, [(topic, 0, None, f"v{i}".encode(), None, None) for i in range(n)])


def test_epoch_end_offsets_survive_a_move_and_a_kill9_with_kafkas_error_codes(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store, 2)
    controller = cluster_view(procs[0])["controller"]
    topic = f"ep-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic)
    produce(procs[0], topic, 10)
    first_leader, first_epoch = leader_and_epoch(procs[0], topic)
    other = next(x["node_id"] for x in cluster_view(procs[0])["brokers"] if x["node_id"] != first_leader)
    ends = {first_epoch: 10}  # epoch -> where it ended
    epoch = move(procs, topic, other)
    if other == controller:  # the kill -9 below must hit a broker that is not the controller
        produce(procs[0], topic, 3)
        ends[epoch] = 13
        epoch = move(procs, topic, first_leader)
    leader = proc_of(procs, leader_and_epoch(procs[0], topic)[0])
    old = next(b for b in procs if b is not leader)
    produce(procs[0], topic, 5)
    hw = max(ends.values()) + 5

    for e, end in ends.items():
        assert epoch_end(leader, topic, e) == (ErrorCode.none, e, end)
        assert epoch_end(leader, topic, e, current=epoch) == (ErrorCode.none, e, end)
    assert epoch_end(leader, topic, epoch, current=epoch) == (ErrorCode.none, epoch, hw)
    assert epoch_end(leader, topic, epoch, version=2) == (ErrorCode.none, epoch, hw)
    assert epoch_end(leader, topic, epoch + 1) == (ErrorCode.none, -1, -1), "an epoch newer than the leader's"
    assert epoch_end(leader, topic, epoch, current=epoch - 1)[0] == ErrorCode.fenced_leader_epoch
    assert epoch_end(leader, topic, epoch, current=epoch + 1)[0] == ErrorCode.unknown_leader_epoch
    assert epoch_end(old, topic, epoch)[0] == ErrorCode.not_leader_or_follower
    assert epoch_end(leader, f"{topic}-missing", 0)[0] == ErrorCode.unknown_topic_or_partition
    assert fetch_code(leader, topic, epoch - 1) == ErrorCode.fenced_leader_epoch
    assert fetch_code(leader, topic, epoch + 1) == ErrorCode.unknown_leader_epoch
    assert fetch_code(leader, topic, epoch) == fetch_code(leader, topic, -1) == ErrorCode.none
    assert list_offsets_code(leader, topic, epoch - 1) == ErrorCode.fenced_leader_epoch
    assert list_offsets_code(leader, topic, epoch + 1) == ErrorCode.unknown_leader_epoch
    assert list_offsets_code(leader, topic, epoch) == ErrorCode.none

    # kill -9: the successor recovers the tail from the dead session's WAL, and the history with it.
    leader.kill9()
    wait_until(lambda: leader_and_epoch(old, topic)[1] > epoch, 30, message="the partition failed over")
    ends[epoch] = hw
    successor_epoch = leader_and_epoch(old, topic)[1]
    wait_until(lambda: epoch_end(old, topic, successor_epoch)[0] == ErrorCode.none, 30, message="served again")
    for e, end in ends.items():
        assert epoch_end(old, topic, e, current=successor_epoch) == (ErrorCode.none, e, end)
    assert epoch_end(old, topic, successor_epoch) == (ErrorCode.none, successor_epoch, hw)


class Polled:
    """A kafka-python consumer of partition 0 and the offsets it received."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100,
                               metadata_max_age_ms=1000, request_timeout_ms=10_000)
        self.c.assign([KafkaTopicPartition(topic, 0)])
        self.c.seek_to_beginning()
        self.got: set[int] = set()

    def until(self, count: int, timeout: float, message: str) -> None:
        def polled() -> bool:
            for records in self.c.poll(timeout_ms=200).values():
                self.got.update(r.offset for r in records)
            return self.got >= set(range(count))

        wait_until(polled, timeout, interval=0, message=message)


def test_kafka_python_keeps_consuming_across_a_move_and_a_kill9(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    import kafka

    assert tuple(int(x) for x in kafka.__version__.split(".")[:2]) >= (2, 1), "validates positions (KIP-320)"
    procs = start_cluster(brokers, file_store, 2)
    controller = cluster_view(procs[0])["controller"]
    topic = f"kp-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic)
    produce(procs[0], topic, 20)
    c = Polled(procs[0].bootstrap, topic)
    try:
        c.until(20, 60, "the records before the move")
        leader, _ = leader_and_epoch(procs[0], topic)
        other = next(x["node_id"] for x in cluster_view(procs[0])["brokers"] if x["node_id"] != leader)
        move(procs, topic, other)
        produce(procs[0], topic, 20)
        c.until(40, 60, "the records after the move")
        if other == controller:
            move(procs, topic, leader)
            produce(procs[0], topic, 20)
            c.until(60, 60, "the records after the move back")
        total = len(c.got)
        victim_node = leader_and_epoch(procs[0], topic)[0]
        assert victim_node != controller
        victim = proc_of(procs, victim_node)
        survivor = next(b for b in procs if b is not victim)
        victim.kill9()
        wait_until(lambda: leader_and_epoch(survivor, topic)[0] == controller, 30, message="the partition failed over")
        produce(survivor, topic, 20)
        c.until(total + 20, 60, "the records after the kill -9")
    finally:
        c.c.close()
