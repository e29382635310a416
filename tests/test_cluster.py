"""Several brokers on one store: membership, metadata-only moves, drain, failover, fencing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.infra.broker import BrokerProcess, wait_until
from tests.test_clients import consume_exactly, create_topic, produce_all


def post(http: str, path: str, body: object) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(f"http://{http}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def cluster_view(b: BrokerProcess) -> dict:  # type: ignore[type-arg]
    status, view = b.get("/v1/cluster")
    assert status == 200
    return view


def leaders(b: BrokerProcess, topic: str) -> dict[int, int]:
    return {p["partition"]: p["leader"] for p in cluster_view(b)["partitions"] if p["topic"] == topic}


def start_cluster(brokers, store, n: int = 3, *extra: str) -> list[BrokerProcess]:  # type: ignore[no-untyped-def]
    procs = [brokers(store, *extra)]
    for _ in range(n - 1):
        procs.append(brokers(store, *extra))
    wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == n, 30, message=f"{n} brokers registered")
    return procs


class Ledger:
    """Acknowledged writes by (partition, offset), from background producers."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.acked: dict[tuple[int, int], bytes] = {}
        self.acked_at: list[tuple[float, int]] = []  # (time.monotonic() of the ack, partition), in order
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 60000, "topic.metadata.refresh.interval.ms": 1000})

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            with self.lock:
                if err is None:
                    key = (msg.partition(), msg.offset())
                    if key in self.acked and self.acked[key] != msg.value():
                        self.errors.append(f"offset {key} acknowledged for two values")
                    self.acked[key] = msg.value()
                    self.acked_at.append((time.monotonic(), msg.partition()))
                elif not err.retriable():
                    self.errors.append(str(err))

        i = 0
        while not self.stop.is_set():
            try:
                p.produce(self.topic, value=f"v{i}-{uuid.uuid4().hex[:6]}".encode(),
                          partition=i % self.partitions, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.002)
            time.sleep(0.001)
        p.flush(60)

    def __enter__(self) -> Ledger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(90)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def verify(self, bootstrap: str) -> None:
        """Every acknowledged value present at its offset; no offset with two values."""
        assert not self.errors, self.errors[:5]
        per_part: dict[int, dict[int, bytes]] = defaultdict(dict)
        for (part, off), v in self.acked.items():
            per_part[part][off] = v
        for part, offs in per_part.items():
            top = max(offs)
            got = consume_exactly(bootstrap, self.topic, part, 0, top + 1, timeout=60)
            seen = {m.offset(): m.value() for m in got}
            assert len(seen) == len(got), "an offset was returned twice"
            lost = [o for o, v in offs.items() if seen.get(o) != v]
            assert not lost, f"partition {part}: {len(lost)} acknowledged records lost, e.g. {lost[:5]}"
        print(f"ledger: {len(self.acked)} acknowledged records verified across {len(per_part)} partitions")


def test_brokers_form_a_cluster_and_spread_partitions(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"c-{uuid.uuid4().hex[:6]}"
    create_topic(procs[1].bootstrap, topic, 6)  # via a non-controller broker: forwarded
    md = AdminClient({"bootstrap.servers": procs[2].bootstrap}).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    counts = defaultdict(int)
    for p in md.topics[topic].partitions.values():
        counts[p.leader] += 1
    assert dict(counts) == {1: 2, 2: 2, 3: 2}
    produce_all(procs[0].bootstrap, [(topic, p, None, f"p{p}".encode(), None, None) for p in range(6)])
    for p in range(6):
        assert consume_exactly(procs[2].bootstrap, topic, p, 0, 1)[0].value() == f"p{p}".encode()


def test_reassignment_moves_metadata_only_and_keeps_data(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"mv-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 3)
    with Ledger(procs[0].bootstrap, topic, 3) as ledger:
        wait_until(lambda: ledger.count() > 300, 30, message="acks before the move")
        before = leaders(procs[0], topic)
        moves = [{"topic": topic, "partition": p, "to": (before[p] % 3) + 1} for p in range(3)]
        reply = post(procs[1].http, "/v1/reassignments", {"moves": moves})
        assert all(r["error"] is None for r in reply["results"]), reply
        after = leaders(procs[0], topic)
        assert after == {m["partition"]: m["to"] for m in moves}
        n = ledger.count()
        wait_until(lambda: ledger.count() > n + 300, 30, message="acks after the move")
    ledger.verify(procs[0].bootstrap)
    epochs = {p["partition"]: p["epoch"] for p in cluster_view(procs[0])["partitions"] if p["topic"] == topic}
    assert all(e >= 1 for e in epochs.values())


def test_sigterm_drains_under_load(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"dr-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 6)
    with Ledger(procs[0].bootstrap, topic, 6) as ledger:
        wait_until(lambda: ledger.count() > 300, 30, message="acks before the drain")
        victim = procs[2]
        assert victim.terminate(60) == 0, victim.log_tail()
        view = cluster_view(procs[0])
        assert sorted(b["node_id"] for b in view["brokers"]) == [1, 2]
        assert {p["leader"] for p in view["partitions"] if p["topic"] == topic} <= {1, 2}
        n = ledger.count()
        wait_until(lambda: ledger.count() > n + 300, 30, message="acks after the drain")
    ledger.verify(procs[0].bootstrap)


def test_kill9_leader_fails_over_within_session_timeout(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"fo-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 6)
    with Ledger(procs[0].bootstrap, topic, 6) as ledger:
        wait_until(lambda: ledger.count() > 300, 30, message="acks before the kill")
        victim = procs[2]  # not the controller
        victim.kill9()
        t0 = time.monotonic()
        wait_until(lambda: 3 not in leaders(procs[0], topic).values(), 20, message="partitions handed over")
        failover = time.monotonic() - t0
        assert failover <= 3.0 + 2.0, f"failover took {failover:.1f}s (session timeout 3s)"
        n = ledger.count()
        wait_until(lambda: ledger.count() > n + 300, 30, message="acks after failover")
    ledger.verify(procs[0].bootstrap)


def test_paused_leader_is_fenced_and_never_acks_again(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"zz-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 6)
    with Ledger(procs[0].bootstrap, topic, 6) as ledger:
        wait_until(lambda: ledger.count() > 300, 30, message="acks before the pause")
        zombie = procs[2]
        assert zombie.proc is not None
        zombie.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: 3 not in leaders(procs[0], topic).values(), 20, message="partitions taken from the zombie")
        zombie.proc.send_signal(signal.SIGCONT)
        code = zombie.proc.wait(30)
        assert code == 3, f"a fenced broker exits with 3, got {code}"
        n = ledger.count()
        wait_until(lambda: ledger.count() > n + 300, 30, message="acks after the zombie left")
    ledger.verify(procs[0].bootstrap)


def test_controller_failover_keeps_metadata(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"cf-{uuid.uuid4().hex[:6]}"
    create_topic(procs[1].bootstrap, topic, 4, config={"retention.ms": "123456"})
    assert cluster_view(procs[1])["controller"] == 1
    procs[0].kill9()
    wait_until(lambda: cluster_view(procs[1])["controller"] in (2, 3), 20, message="a new controller")
    wait_until(lambda: 1 not in leaders(procs[1], topic).values(), 20, message="controller's partitions moved")
    admin = AdminClient({"bootstrap.servers": procs[1].bootstrap})
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource("topic", topic)
    assert admin.describe_configs([res])[res].result(30)["retention.ms"].value == "123456"
    produce_all(procs[1].bootstrap, [(topic, p, None, b"after", None, None) for p in range(4)])


@pytest.mark.parametrize("size_mb", [1, 500])
def test_reassignment_time_does_not_depend_on_partition_size(brokers, file_store, size_mb: int) -> None:  # type: ignore[no-untyped-def]
    # No background compaction: the byte counters must see the move alone.
    no_compaction = ("--compact-after-bytes", str(1 << 40), "--compact-after-ms", str(10**9))
    procs = start_cluster(brokers, file_store, 2, *no_compaction)
    topic = f"sz-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 1)
    value = os.urandom(1000)
    produce_all(procs[0].bootstrap, [(topic, 0, None, value, None, None)] * (size_mb * 1000),
                **{"batch.size": 1 << 20, "linger.ms": 20})
    before = procs[0].metrics_text() + procs[1].metrics_text()
    leader = leaders(procs[0], topic)[0]
    reply = post(procs[0].http, "/v1/reassignments", {"moves": [{"topic": topic, "partition": 0, "to": 3 - leader}]})
    assert reply["results"][0]["error"] is None
    assert reply["seconds"] < 1.0, f"moving {size_mb} MB took {reply['seconds']}s"
    after = procs[0].metrics_text() + procs[1].metrics_text()

    def record_bytes_written(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("floe_objectstore_written_bytes_total{")
                   and ('kind="data"' in line or 'kind="wal"' in line))

    copied = record_bytes_written(after) - record_bytes_written(before)
    assert copied == 0, f"a move wrote {copied} bytes of WAL/data objects: record data was copied"
    print(f"moved a {size_mb} MB partition in {reply['seconds'] * 1000:.0f} ms")


def test_kafka_reassignment_apis_move_leaders(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """Standard tooling: kafka-python's admin client moves a partition with the Kafka API."""
    from kafka.admin import KafkaAdminClient

    procs = start_cluster(brokers, file_store, 2)
    topic = f"ka-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 2)
    produce_all(procs[0].bootstrap, [(topic, p, None, b"before", None, None) for p in range(2)])
    before = leaders(procs[0], topic)
    admin = KafkaAdminClient(bootstrap_servers=procs[0].bootstrap)
    from kafka.structs import TopicPartition as KTP

    admin.alter_partition_reassignments({KTP(topic, 0): [3 - before[0]]})
    assert leaders(procs[0], topic)[0] == 3 - before[0]
    assert admin.list_partition_reassignments() == {} or not admin.list_partition_reassignments()
    admin.close()
    produce_all(procs[0].bootstrap, [(topic, 0, None, b"after", None, None)])
    assert [m.value() for m in consume_exactly(procs[1].bootstrap, topic, 0, 0, 2)] == [b"before", b"after"]


def test_not_leader_answers_name_the_new_leader(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """KIP-951: a produce to the wrong broker says who leads now, so clients skip a metadata round trip."""
    import datetime
    import socket

    from kio.schema.produce.v10.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from kio.serial import entity_reader
    from kio.static.primitive import Records, i16, i32

    from floe_broker.protocol.build import response_class
    from tests.test_bad_input import _valid_batch, raw_request

    procs = start_cluster(brokers, file_store, 2)
    topic = f"hint-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 1)
    leader = leaders(procs[0], topic)[0]
    other = 3 - leader
    other_proc = next(p for p in procs if cluster_view(p)["brokers"][other - 1]["http"] == p.http)
    req = ProduceRequest(acks=i16(-1), timeout=datetime.timedelta(seconds=5), topic_data=(
        TopicProduceData(name=topic, partition_data=(
            PartitionProduceData(index=i32(0), records=Records(_valid_batch())),)),))
    with socket.create_connection(("127.0.0.1", other_proc.kafka_port), timeout=10) as s:
        raw = raw_request(s, 0, 10, req)
    cls = response_class(0, 10)
    _, off = entity_reader(cls.__header_schema__)(raw, 0)
    body, _ = entity_reader(cls)(raw, off)
    part = body.responses[0].partition_responses[0]
    assert part.error_code == 6  # NOT_LEADER_OR_FOLLOWER
    assert part.current_leader.leader_id == leader
    assert [(n.node_id, n.port) for n in body.node_endpoints] == [
        (leader, next(b["port"] for b in cluster_view(procs[0])["brokers"] if b["node_id"] == leader))]


def test_partition_released_for_a_move_that_never_commits_is_reclaimed(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """A move whose controller dies between the release and the commit leaves the partition with
    its old leader at an epoch that leader may not reopen; the leader asks for a new epoch."""
    procs = start_cluster(brokers, file_store, 2)
    topic = f"rc-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 2)
    produce_all(procs[0].bootstrap, [(topic, 0, None, b"before", None, None)])
    leader = leaders(procs[0], topic)[0]
    owner = next(p for p in procs if p.get("/readyz")[1]["node"] == leader)
    epoch = next(p["epoch"] for p in cluster_view(procs[0])["partitions"]
                 if p["topic"] == topic and p["partition"] == 0)
    post(owner.http, "/internal/v1/release", {"topic": topic, "partition": 0, "epoch": epoch})  # no commit follows
    wait_until(lambda: any(p["topic"] == topic and p["partition"] == 0 and p["epoch"] == epoch + 1
                           and p["leader"] == leader for p in cluster_view(procs[0])["partitions"]),
               20, message="the old leader reclaimed the partition at a new epoch")
    produce_all(procs[0].bootstrap, [(topic, 0, None, b"after", None, None)])
    got = consume_exactly(procs[0].bootstrap, topic, 0, 0, 2)
    assert [m.value() for m in got] == [b"before", b"after"]


def _bucket_dir(store) -> Path:  # type: ignore[no-untyped-def]
    return Path(store.url.removeprefix("file://")) / "test"


def test_a_bucket_from_before_deltas_opens_with_its_topics_and_records(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """Upgrade: a bucket holding only the whole ``meta/cluster`` (indented JSON, no ``meta/log/``)."""
    first = brokers(file_store)
    topic = f"up-{uuid.uuid4().hex[:6]}"
    create_topic(first.bootstrap, topic, 3, config={"retention.ms": "3600000"})
    sent = [(topic, p, None, f"v{p}-{i}".encode(), None, None) for p in range(3) for i in range(20)]
    produce_all(first.bootstrap, sent)
    assert first.terminate() == 0
    bucket = _bucket_dir(file_store)
    state = asyncio.run(_load_metadata(bucket))
    for delta in (bucket / "meta" / "log").iterdir():
        delta.unlink()
    (bucket / "meta" / "cluster").write_bytes(json.dumps(json.loads(state.to_bytes()), indent=1,
                                                         sort_keys=True).encode())

    second = brokers(file_store)
    md = AdminClient({"bootstrap.servers": second.bootstrap}).list_topics(topic, timeout=30)
    assert len(md.topics[topic].partitions) == 3
    for p in range(3):
        got = consume_exactly(second.bootstrap, topic, p, 0, 20)
        assert [m.value() for m in got] == [f"v{p}-{i}".encode() for i in range(20)]
    produce_all(second.bootstrap, [(topic, p, None, b"after", None, None) for p in range(3)])
    assert any(k.name != "00000000000000000000" for k in (bucket / "meta" / "log").iterdir())  # deltas from now on


async def _load_metadata(bucket: Path):  # type: ignore[no-untyped-def]
    from floe_broker.cluster.metadata_log import MetadataLog
    from floe_broker.storage.local import FileStore

    store = FileStore(bucket, fsync=False)
    try:
        return await MetadataLog(store).load()
    finally:
        await store.close()


def test_a_push_from_far_ahead_or_garbage_makes_a_broker_read_the_bucket(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store, 2)
    member = procs[1]
    version = cluster_view(member)["version"]
    ahead = {"version": version + 50, "delta": json.dumps({"version": version + 50, "sections": {},
                                                           "topics": {"ghost": None}})}
    assert post(member.http, "/internal/v1/metadata", ahead) == {"ok": True}
    assert post(member.http, "/internal/v1/metadata", {"version": version + 1, "delta": "{not json"}) == {"ok": True}
    assert cluster_view(member)["version"] == version  # nothing invented: the bucket had no such version
    topic = f"gap-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, 2)
    wait_until(lambda: leaders(member, topic), 20, message="the member sees the next real change")
    produce_all(member.bootstrap, [(topic, p, None, b"x", None, None) for p in range(2)])
    log = member.log_text()
    assert "missed a metadata delta; catching up from the bucket" in log
    assert "undecodable metadata push; reading the bucket instead" in log
