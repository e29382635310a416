"""Produce/consume throughput and latency for one broker process, printed as figures.

    .venv/bin/python benchmarks/produce_consume.py --store file --mb 500
    .venv/bin/python benchmarks/produce_consume.py --store moto --mb 200

Starts a real broker process (file:// store in a temp dir, or boto3 against a
moto S3 server), produces ``--mb`` of 1 KiB records with confluent-kafka
(acks=all) as fast as it can (throughput), then for ``--latency-seconds`` at a
fixed ``--latency-rate-mb`` (latency: p50/p99 from enqueue to delivery
report), then consumes everything back, and prints: produce MB/s, latency at
saturation and at the fixed rate, consume MB/s, WAL PUTs per second and bytes
per PUT (from the broker's /metrics). Nothing is asserted:
figures go in the README with the command and machine that produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "broker")]

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.infra.broker import BrokerProcess  # noqa: E402


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="floe-bench-"))
    moto = None
    env: dict[str, str] = {}
    extra = ["--flush-interval-ms", str(args.flush_ms), "--fsync", "true" if args.fsync else "false"]
    if args.store == "file":
        storage = f"file://{tmp / 'bucket'}"
    else:
        from tests.infra.moto_server import MotoServer

        moto = MotoServer()
        moto.start()
        storage = f"s3://{moto.bucket}/bench"
        env = {"AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key}
        extra += ["--s3-endpoint", moto.endpoint, "--s3-region", "us-east-1", "--s3-path-style"]
    broker = BrokerProcess(storage=storage, cluster="bench", log_path=tmp / "broker.log", env=env, extra=extra)
    broker.start()
    try:
        topic = "bench"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)
        value = os.urandom(args.record_size)
        count = args.mb * 1024 * 1024 // args.record_size
        latencies: list[float] = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                      "batch.size": 1024 * 1024, "queue.buffering.max.kbytes": 512 * 1024,
                      "compression.type": "none"})
        m0 = broker.metrics_text()
        t0 = time.perf_counter()
        sent = 0
        last_report = t0

        def cb(err, _msg, start):  # type: ignore[no-untyped-def]
            if err is None:
                latencies.append(time.perf_counter() - start)

        while sent < count:
            now = time.perf_counter()
            try:
                p.produce(topic, value=value, on_delivery=lambda e, m, s=now: cb(e, m, s))
                sent += 1
            except BufferError:
                p.poll(0.001)
            if now - last_report > 2:
                print(f"  produced {sent}/{count}", file=sys.stderr, flush=True)
                last_report = now
        p.flush(120)
        produce_s = time.perf_counter() - t0
        m1 = broker.metrics_text()
        puts = metric(m1, "floe_wal_puts_total") - metric(m0, "floe_wal_puts_total")
        put_bytes = metric(m1, "floe_wal_bytes_total") - metric(m0, "floe_wal_bytes_total")

        # Latency at a sustainable rate: saturation numbers above are queueing, not service time.
        rate_lat: list[float] = []
        per_sec = int(args.latency_rate_mb * 1024 * 1024 / args.record_size)
        t_lat = time.perf_counter()
        n = 0
        while time.perf_counter() - t_lat < args.latency_seconds:
            due = t_lat + n / per_sec
            now = time.perf_counter()
            if now < due:
                p.poll(min(due - now, 0.001))
                continue
            try:
                p.produce(topic, value=value,
                          on_delivery=lambda e, m, s=now: None if e else rate_lat.append(time.perf_counter() - s))
                n += 1
            except BufferError:
                p.poll(0.001)
        p.flush(60)

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench", "enable.auto.commit": False,
                      "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
                      "queued.max.messages.kbytes": 256 * 1024})
        c.assign([TopicPartition(topic, i, 0) for i in range(args.partitions)])
        got = 0
        nbytes = 0
        t1 = time.perf_counter()
        while got < len(latencies) + len(rate_lat):
            for m in c.consume(10000, 1.0):
                if not m.error():
                    got += 1
                    nbytes += len(m.value())
            if time.perf_counter() - t1 > 300:
                break
        consume_s = time.perf_counter() - t1
        c.close()
        lat = sorted(latencies)
        mb = len(lat) * args.record_size / 1e6
        rl = sorted(rate_lat) or [0.0]
        return {
            "store": args.store,
            "records": len(lat),
            "record_bytes": args.record_size,
            "partitions": args.partitions,
            "flush_interval_ms": args.flush_ms,
            "produce_MBps": round(mb / produce_s, 1),
            "produce_p50_ms_saturated": round(statistics.median(lat) * 1000, 1),
            "produce_p99_ms_saturated": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
            "latency_rate_MBps": args.latency_rate_mb,
            "produce_p50_ms_at_rate": round(statistics.median(rl) * 1000, 1),
            "produce_p99_ms_at_rate": round(rl[max(int(len(rl) * 0.99) - 1, 0)] * 1000, 1),
            "consume_MBps": round(nbytes / 1e6 / consume_s, 1),
            "wal_puts_per_s": round(puts / produce_s, 1),
            "bytes_per_put": int(put_bytes / puts) if puts else 0,
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
                       f"{platform.python_version()}",
        }
    finally:
        broker.terminate(60)
        broker.stop()
        if moto is not None:
            moto.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["file", "moto"], default="file")
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--flush-ms", type=int, default=10)
    ap.add_argument("--fsync", action="store_true", help="fsync WAL objects on the file store")
    ap.add_argument("--latency-rate-mb", type=float, default=50.0, help="MB/s for the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    result = run(ap.parse_args())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
