"""Transactions across real broker processes: the coordinator's partition moved, then its broker killed -9.

Three ``floe broker`` processes share a ``file://`` bucket. One transactional
producer (confluent-kafka) writes transactions over three partitions. In the
middle of one transaction the coordinator's ``__transaction_state`` partition
and a data partition are moved to other brokers; in the middle of another the
coordinator's broker is killed -9. After recovery a read_committed consumer
must see every committed transaction, whole and once, and nothing of an
aborted one; read_uncommitted must see at least as much.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import create_topic
from tests.test_cluster import cluster_view, leaders, post, start_cluster
from tests.txn.ledger import read_back

TXN_TOPIC = "__transaction_state"
PARTITIONS = 3


def coordinator_node(b: BrokerProcess) -> int:
    return leaders(b, TXN_TOPIC)[0]


def end(producer: Producer, commit: bool) -> bool:
    """Commit (or abort) the way librdkafka's documentation says to: retry what is retriable, abort
    what must be aborted. Returns whether the transaction committed."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if commit:
                producer.commit_transaction(30)
                return True
            producer.abort_transaction(30)
            return False
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.txn_requires_abort():
                commit = False
                continue
            if err.retriable():
                continue
            raise
    raise TimeoutError("the transaction never ended")


def write_txn(producer: Producer, topic: str, tag: str, during: Any = None) -> list[bytes]:
    producer.begin_transaction()
    values = [f"{tag}-{i}".encode() for i in range(6)]
    for i, v in enumerate(values[:3]):
        producer.produce(topic, value=v, partition=i % PARTITIONS)
    producer.flush(30)
    if during is not None:
        during()
    for i, v in enumerate(values[3:]):
        while True:
            try:
                producer.produce(topic, value=v, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.1)
    return values


def test_moves_and_a_killed_coordinator_lose_no_commit_and_show_no_abort(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store, 3, "--transaction-state-partitions", "1")
    topic = f"txc-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, PARTITIONS)
    bootstrap = ",".join(p.bootstrap for p in procs)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-cluster", "linger.ms": 5,
                         "transaction.timeout.ms": 20000, "topic.metadata.refresh.interval.ms": 1000})
    producer.init_transactions(60)
    committed: list[list[bytes]] = []
    aborted: list[list[bytes]] = []

    def record(values: list[bytes], ok: bool) -> None:
        (committed if ok else aborted).append(values)

    for r in range(3):
        values = write_txn(producer, topic, f"a{r}")
        record(values, end(producer, commit=r != 1))

    controller = procs[0]
    by_node = {b["node_id"]: next(p for p in procs if p.http.endswith(":" + b["http"].rsplit(":", 1)[1]))
               for b in cluster_view(controller)["brokers"]}
    nodes = sorted(by_node)

    def move_coordinator_and_a_partition() -> None:
        coord = coordinator_node(controller)
        data_leader = leaders(controller, topic)[0]
        moves = [{"topic": TXN_TOPIC, "partition": 0, "to": next(n for n in nodes if n != coord)},
                 {"topic": topic, "partition": 0, "to": next(n for n in nodes if n != data_leader)}]
        reply = post(controller.http, "/v1/reassignments", {"moves": moves})
        assert all(r["error"] is None for r in reply["results"]), reply

    values = write_txn(producer, topic, "moved", during=move_coordinator_and_a_partition)
    record(values, end(producer, commit=True))

    controller_node = controller_node_id(controller)
    if coordinator_node(controller) == controller_node:  # keep the controller: the kill is the coordinator's
        post(controller.http, "/v1/reassignments", {"moves": [
            {"topic": TXN_TOPIC, "partition": 0, "to": next(n for n in nodes if n != controller_node)}]})
        wait_until(lambda: coordinator_node(controller) != controller_node, 30, message="coordinator moved")
    victim_node = coordinator_node(controller)
    victim = by_node[victim_node]

    values = write_txn(producer, topic, "killed", during=victim.kill9)
    record(values, end(producer, commit=True))
    wait_until(lambda: victim_node not in leaders(controller, TXN_TOPIC).values(), 30, message="coordinator failover")

    for r in range(2):
        values = write_txn(producer, topic, f"b{r}")
        record(values, end(producer, commit=True))
    producer.flush(30)
    del producer

    alive = ",".join(p.bootstrap for p in procs if p is not victim)
    want = sorted(v for txn in committed for v in txn)
    seen = read_back(alive, topic, PARTITIONS, len(want), timeout=60, quiet_s=2)
    counts = Counter(seen)
    assert not [v for v, n in counts.items() if n > 1], "a committed record was returned twice"
    assert sorted(seen) == want, (f"read_committed: missing {sorted(set(want) - set(seen))[:6]}, "
                                  f"unexpected {sorted(set(seen) - set(want))[:6]}")
    for txn in committed + aborted:
        inside = [v for v in txn if v in counts]
        assert len(inside) in (0, len(txn)), f"a partial transaction is visible: {inside}"
    uncommitted = set(read_back(alive, topic, PARTITIONS, len(want), isolation="read_uncommitted", timeout=60,
                                  quiet_s=2))
    assert set(want) <= uncommitted
    print(f"transactions: {len(committed)} committed, {len(aborted)} aborted, verified")


def controller_node_id(b: BrokerProcess) -> int:
    return int(cluster_view(b)["controller"])
