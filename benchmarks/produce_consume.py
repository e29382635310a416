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
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "broker")]

from benchmarks.common import (  # noqa: E402
    consume_all,
    create_topic,
    machine,
    metric,
    pct,
    produce_at_rate,
    produce_saturated,
    producer,
)

from tests.infra.broker import BrokerProcess  # noqa: E402


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
        create_topic(broker.bootstrap, topic, args.partitions, 1, timeout=30)
        value = os.urandom(args.record_size)
        count = args.mb * 1024 * 1024 // args.record_size
        p = producer(broker.bootstrap)
        m0 = broker.metrics_text()
        latencies, produce_s = produce_saturated(p, topic, value, count)
        m1 = broker.metrics_text()
        puts = metric(m1, "floe_wal_puts_total") - metric(m0, "floe_wal_puts_total")
        put_bytes = metric(m1, "floe_wal_bytes_total") - metric(m0, "floe_wal_bytes_total")

        # Latency at a sustainable rate: saturation numbers above are queueing, not service time.
        per_sec = args.latency_rate_mb * 1024 * 1024 / args.record_size
        rate_lat = produce_at_rate(p, topic, value, per_sec, args.latency_seconds)

        _, nbytes, consume_s = consume_all(broker.bootstrap, topic, args.partitions, len(latencies) + len(rate_lat))
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
            "produce_p99_ms_saturated": round(pct(lat, 0.99) * 1000, 1),
            "latency_rate_MBps": args.latency_rate_mb,
            "produce_p50_ms_at_rate": round(statistics.median(rl) * 1000, 1),
            "produce_p99_ms_at_rate": round(pct(rl, 0.99) * 1000, 1),
            "consume_MBps": round(nbytes / 1e6 / consume_s, 1),
            "wal_puts_per_s": round(puts / produce_s, 1),
            "bytes_per_put": int(put_bytes / puts) if puts else 0,
            "machine": machine(),
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
