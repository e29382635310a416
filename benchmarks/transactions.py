"""Transactional produce against idempotent produce, in one run on one broker, printed (nothing is asserted).

    .venv/bin/python benchmarks/transactions.py --transactions 200 --records 100

Starts one ``floe broker`` on a fresh ``file://`` bucket and, with
confluent-kafka, measures:

- idempotent produce: ``--transactions x --records`` records of ``--size``
  bytes, flushed in groups of ``--records`` (so both runs wait the same way);
- transactional produce: the same records, one transaction per group, each
  ``commit_transaction`` timed (its latency is the coordinator's two durable
  state records and the markers' durable append, on top of the flush).

Figures are indicative: on a shared, loaded machine they move between runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka import Producer  # noqa: E402

from tests.infra.broker import BrokerProcess  # noqa: E402
from tests.test_clients import create_topic  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values) or [float("nan")]
    return s[min(len(s) - 1, max(0, int(len(s) * q) - 1))]


def idempotent(boot: str, topic: str, groups: int, records: int, value: bytes) -> dict[str, float]:
    p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "linger.ms": 5, "acks": "all"})
    flushes: list[float] = []
    t0 = time.perf_counter()
    for _ in range(groups):
        for i in range(records):
            p.produce(topic, value=value, partition=i % 3)
        f0 = time.perf_counter()
        p.flush(60)
        flushes.append((time.perf_counter() - f0) * 1000)
    seconds = time.perf_counter() - t0
    return {"records_per_s": round(groups * records / seconds), "MB_per_s": round(groups * records * len(value)
                                                                                 / seconds / 1e6, 2),
            "flush_p50_ms": round(pct(flushes, 0.5), 1), "flush_p99_ms": round(pct(flushes, 0.99), 1)}


def transactional(boot: str, topic: str, groups: int, records: int, value: bytes) -> dict[str, float]:
    p = Producer({"bootstrap.servers": boot, "transactional.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "linger.ms": 5})
    p.init_transactions(60)
    commits: list[float] = []
    t0 = time.perf_counter()
    for _ in range(groups):
        p.begin_transaction()
        for i in range(records):
            p.produce(topic, value=value, partition=i % 3)
        c0 = time.perf_counter()
        p.commit_transaction(60)  # flushes, then EndTxn: answered once the markers are durable
        commits.append((time.perf_counter() - c0) * 1000)
    seconds = time.perf_counter() - t0
    return {"records_per_s": round(groups * records / seconds), "MB_per_s": round(groups * records * len(value)
                                                                                 / seconds / 1e6, 2),
            "commit_p50_ms": round(pct(commits, 0.5), 1), "commit_p99_ms": round(pct(commits, 0.99), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transactions", type=int, default=200)
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ns = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="floe-txn-bench-"))
    broker = BrokerProcess(storage=f"file://{tmp / 'bucket'}", cluster="bench", log_path=tmp / "b.log", env={},
                           extra=["--fsync", "false"])
    try:
        broker.start()
        create_topic(broker.bootstrap, "idem", 3)
        create_topic(broker.bootstrap, "txn", 3)
        value = b"x" * ns.size
        idem = idempotent(broker.bootstrap, "idem", ns.transactions, ns.records, value)
        txn = transactional(broker.bootstrap, "txn", ns.transactions, ns.records, value)
        print(json.dumps({"machine": platform.machine(), "transactions": ns.transactions,
                          "records_per_transaction": ns.records, "record_bytes": ns.size,
                          "idempotent": idem, "transactional": txn, "note": "indicative (shared, loaded machine)"}))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
