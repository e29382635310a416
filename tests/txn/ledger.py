"""A transactional writer for the history checker, and the checks its history must pass.

A background thread runs confluent-kafka transactions of a few values over
every partition, committing about two in three and aborting the rest. Each
transaction ends in one of three outcomes: committed (the client said so),
aborted (the client aborted it), or unknown (the client lost its producer
mid-commit, e.g. fenced after a coordinator failover; either outcome is
legal). :meth:`TxnLedger.verify` reads the topic back with read_committed and
checks: no value of an aborted transaction is visible (aborted read), every
committed value is (lost commit), each transaction is all or nothing
(partial transaction), and no value is returned twice (duplicate).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

VALUES_PER_TXN = 4


class TxnLedger:
    def __init__(self, bootstrap: str, topic: str, partitions: int, *, seed: int = 7) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.committed: list[list[bytes]] = []
        self.aborted: list[list[bytes]] = []
        self.unknown: list[list[bytes]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.random = random.Random(seed)
        self.txn_id = f"history-{uuid.uuid4().hex[:6]}"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _producer(self) -> Producer:
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": self.txn_id, "linger.ms": 5,
                      "transaction.timeout.ms": 30000, "topic.metadata.refresh.interval.ms": 1000})
        deadline = time.monotonic() + 120
        while True:
            try:
                p.init_transactions(30)
                return p
            except KafkaException as exc:
                if time.monotonic() > deadline or not exc.args[0].retriable():
                    raise
                time.sleep(0.5)

    def _run(self) -> None:
        producer = self._producer()
        n = 0
        while not self.stop.is_set():
            values = [f"t{n}-{i}-{uuid.uuid4().hex[:4]}".encode() for i in range(VALUES_PER_TXN)]
            n += 1
            commit = self.random.random() < 0.67
            try:
                outcome = self._one(producer, values, commit)
            except KafkaException as exc:
                # fatal (fenced, or the coordinator gave up on us): the outcome is unknown, start over
                outcome = "unknown"
                with self.lock:
                    self.errors.append(str(exc.args[0]))
                producer = self._producer()
            with self.lock:
                {"committed": self.committed, "aborted": self.aborted, "unknown": self.unknown}[outcome].append(values)

    def _one(self, producer: Producer, values: list[bytes], commit: bool) -> str:
        producer.begin_transaction()
        try:
            for i, v in enumerate(values):
                while True:
                    try:
                        producer.produce(self.topic, value=v, partition=i % self.partitions)
                        break
                    except BufferError:
                        producer.poll(0.05)
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            commit = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if commit:
                    producer.commit_transaction(30)
                    return "committed"
                producer.abort_transaction(30)
                return "aborted"
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.txn_requires_abort():
                    commit = False
                elif not err.retriable():
                    raise
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "transaction never ended", fatal=True))

    def __enter__(self) -> TxnLedger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(180)

    def count(self) -> int:
        with self.lock:
            return len(self.committed)

    def verify(self, bootstrap: str) -> None:
        want = {v for txn in self.committed for v in txn}
        seen = read_back(bootstrap, self.topic, self.partitions, len(want))
        counts = Counter(seen)
        duplicates = [v for v, c in counts.items() if c > 1]
        assert not duplicates, f"duplicates: {duplicates[:5]}"
        aborted_reads = [v for txn in self.aborted for v in txn if v in counts]
        assert not aborted_reads, f"aborted reads: {aborted_reads[:5]}"
        lost = sorted(want - set(counts))
        assert not lost, f"{len(lost)} committed values lost, e.g. {lost[:5]}"
        partial = [txn for txn in self.committed + self.aborted + self.unknown
                   if 0 < sum(v in counts for v in txn) < len(txn)]
        assert not partial, f"partial transactions visible: {partial[:3]}"
        known = want | {v for txn in self.unknown for v in txn}
        stray = [v for v in counts if v not in known]
        assert not stray, f"values no transaction wrote: {stray[:5]}"
        print(f"transactions: {len(self.committed)} committed, {len(self.aborted)} aborted, "
              f"{len(self.unknown)} unknown; {len(seen)} values read back under read_committed")


def read_back(bootstrap: str, topic: str, partitions: int, expect: int, *, isolation: str = "read_committed",
              timeout: float = 120, quiet_s: float = 3) -> list[bytes]:
    """Every value from offset 0 of every partition under ``isolation``: reads until at least ``expect``
    arrived and then nothing more for ``quiet_s`` (so extra, unwanted values are seen too)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "isolation.level": isolation, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    quiet = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None:
                if len(out) >= expect:
                    quiet = quiet or time.monotonic()
                    if time.monotonic() - quiet > quiet_s:
                        break
                continue
            if not msg.error():
                out.append(msg.value())
                quiet = None
    finally:
        consumer.close()
    return out
