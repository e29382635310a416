"""Cluster links: how fast one Floe broker mirrors a topic of a running Apache Kafka, and the cut-over pause.

    .venv/bin/python benchmarks/link.py                 # 8 partitions, 200,000 records of 1 KiB
    .venv/bin/python benchmarks/link.py --records 50000 # a smoke run

One Kafka node (KRaft, from Maven) takes the records first, with Kafka's own
``ProducerPerformance`` (lz4 batches, so the mirror copies compressed bytes
as stored); then one Floe broker (``file://`` store, no fsync) gets a link to
the topic, and the time from the link's creation until every partition's
end offset on Floe equals Kafka's is the catch-up figure. Then the cut-over:
a producer already pointed at Floe sends to the (still read-only) topic in a
loop from the moment ``promote`` is called; the pause is the time from that
call until the producer's first acknowledgement, beside the time the promote
call itself takes and the time until the link reports every partition
promoted. Prints the figures with the machine and the load average before and
after; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from benchmarks.common import create_topic, machine  # noqa: E402

from tests.infra.apache_kafka import PRODUCER_PERFORMANCE, KafkaCluster, run_tool  # noqa: E402
from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402

MB = 1e6


def post(http: str, path: str, body: object) -> None:
    request = urllib.request.Request(f"http://{http}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()


def ends(broker: BrokerProcess) -> dict[int, int]:
    _, status = broker.get("/v1/links/bench")
    return {p["partition"]: p["floe_end"] for t in status.get("topics", []) for p in t["partitions"]}


def measure_cut_over(floe: BrokerProcess) -> dict[str, float]:
    """Milliseconds from the promote call until it returned, until promoted, until a moved producer's first ack."""
    from confluent_kafka import KafkaError, Producer

    producer = Producer({"bootstrap.servers": floe.bootstrap, "linger.ms": 0, "retries": 0})
    producer.produce("bench", value=b"warm-up", partition=0)  # metadata and connection in place, refused
    producer.flush(30)
    acked: list[float] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is None:
            acked.append(time.monotonic())

    t0 = time.monotonic()
    post(floe.http, "/v1/links/bench/promote", {})
    returned = time.monotonic()
    promoted: list[float] = []
    while not acked:  # a producer moved to Floe: retry until the first record is taken
        producer.produce("bench", value=b"first on floe", partition=0, on_delivery=delivered)
        producer.flush(30)
        if not promoted and all(t["state"] == "promoted" for t in floe.get("/v1/links/bench")[1]["topics"]):
            promoted.append(time.monotonic())
    wait_until(lambda: all(t["state"] == "promoted" for t in floe.get("/v1/links/bench")[1]["topics"]), 60,
               interval=0.01, message="every partition promoted")
    done = promoted[0] if promoted else time.monotonic()
    ms = 1000.0
    return {"promote_call_ms": round((returned - t0) * ms, 1), "first_ack_ms": round((acked[0] - t0) * ms, 1),
            "all_promoted_ms": round((done - t0) * ms, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="floe-link-bench-"))
    load_before = os.getloadavg()
    kafka = KafkaCluster(base / "kafka", size=1, heap="1g").start()
    floe: BrokerProcess | None = None
    try:
        create_topic(kafka.bootstrap, "bench", args.partitions)
        done = run_tool(PRODUCER_PERFORMANCE, "--topic", "bench", "--num-records", str(args.records),
                        "--record-size", str(args.record_size), "--throughput", "-1", "--producer-props",
                        f"bootstrap.servers={kafka.bootstrap}", "compression.type=lz4", "linger.ms=5",
                        "batch.size=131072", timeout=900)
        assert done.returncode == 0, done.stderr
        from confluent_kafka import Consumer, TopicPartition

        probe = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "bench-probe"})
        source = {p: probe.get_watermark_offsets(TopicPartition("bench", p), timeout=10)[1]
                  for p in range(args.partitions)}
        probe.close()
        floe = BrokerProcess(storage=f"file://{base / 'bucket'}", cluster="bench", log_path=base / "floe.log",
                             env={}, extra=["--fsync", "false"]).start()
        t0 = time.monotonic()
        post(floe.http, "/v1/links", {"name": "bench", "source": {"bootstrap_servers": kafka.bootstrap},
                                      "topics": ["bench"]})
        wait_until(lambda: ends(floe) == source, 1800, interval=0.2, message="the link caught up")
        seconds = time.monotonic() - t0
        stored = sum(int(float(line.split()[-1])) for line in floe.metrics_text().splitlines()
                     if line.startswith("floe_link_bytes_total{"))
        cut_over = measure_cut_over(floe)
        figures = {"records": sum(source.values()), "partitions": args.partitions, "record_size": args.record_size,
                   "catch_up_s": round(seconds, 1), "records_per_s": round(sum(source.values()) / seconds),
                   "mirrored_MB": round(stored / MB, 1), "mirrored_MBps": round(stored / MB / seconds, 1),
                   "uncompressed_MBps": round(sum(source.values()) * args.record_size / MB / seconds, 1),
                   **cut_over,
                   "load_before": [round(x, 1) for x in load_before],
                   "load_after": [round(x, 1) for x in os.getloadavg()], "machine": machine()}
        print(json.dumps(figures))
    finally:
        if floe is not None:
            floe.stop()
        kafka.stop()


if __name__ == "__main__":
    main()
