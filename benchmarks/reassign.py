"""Reassignment and failover times for a 3-broker cluster, printed as figures.

    .venv/bin/python benchmarks/reassign.py --store file --moves 100
    .venv/bin/python benchmarks/reassign.py --store radosgw --moves 50

Fills one partition with ``--small-mb`` and another with ``--large-mb`` of
1 KiB records, then moves each back and forth ``--moves`` times through
``POST /v1/reassignments`` and reports p50/p99 of the controller's move time
for both sizes (metadata only, so they should match). Then kill -9s the
broker leading most partitions and reports the seconds until its partitions
are served again (a produce to each succeeds). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402
from tests.test_cluster import cluster_view, leaders, post  # noqa: E402


def fill(bootstrap: str, topic: str, partition: int, mb: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20, "acks": "all"})
    value = os.urandom(1024)
    for i in range(mb * 1024):
        while True:
            try:
                p.produce(topic, value=value, partition=partition)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            print(f"  filling partition {partition}: {i // 1024}/{mb} MB", file=sys.stderr, flush=True)
    p.flush(300)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(len(s) * q) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["file", "radosgw"], default="file")
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--small-mb", type=int, default=1)
    ap.add_argument("--large-mb", type=int, default=500)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="floe-reassign-"))
    rgw = None
    env: dict[str, str] = {}
    flags = ["--session-timeout-ms", str(args.session_timeout_ms), "--fsync", "false"]
    if args.store == "file":
        storage = f"file://{tmp / 'bucket'}"
    else:
        import boto3

        from tests.infra.radosgw import Radosgw

        rgw = Radosgw(tmp / "rgw", memstore_bytes=max(2, args.large_mb // 256 + 2) << 30)
        rgw.start()
        boto3.client("s3", endpoint_url=rgw.endpoint, region_name=rgw.region, aws_access_key_id=rgw.access_key,
                     aws_secret_access_key=rgw.secret_key).create_bucket(Bucket="floe-bench")
        storage = "s3://floe-bench/reassign"
        env = {"AWS_ACCESS_KEY_ID": rgw.access_key, "AWS_SECRET_ACCESS_KEY": rgw.secret_key}
        flags += ["--s3-endpoint", rgw.endpoint, "--s3-region", rgw.region, "--s3-path-style"]
    procs = []
    try:
        for i in range(3):
            procs.append(BrokerProcess(storage=storage, cluster="bench", log_path=tmp / f"b{i}.log",
                                       env=env, extra=flags).start())
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30)
        bootstrap = ",".join(p.bootstrap for p in procs)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("bench", 6, 1)])["bench"].result(30)
        fill(bootstrap, "bench", 0, args.small_mb)
        fill(bootstrap, "bench", 1, args.large_mb)
        times: dict[int, list[float]] = {0: [], 1: []}
        for i in range(args.moves):
            for part in (0, 1):
                cur = leaders(procs[0], "bench")[part]
                to = cur % 3 + 1
                reply = post(procs[i % 3].http, "/v1/reassignments",
                             {"moves": [{"topic": "bench", "partition": part, "to": to}]})
                assert reply["results"][0]["error"] is None, reply
                times[part].append(reply["seconds"])
        # failover: kill -9 the broker leading the most partitions (not the controller)
        view = cluster_view(procs[0])
        counts: dict[int, int] = {}
        for p in view["partitions"]:
            if p["topic"] == "bench":
                counts[p["leader"]] = counts.get(p["leader"], 0) + 1
        controller = view["controller"]
        victim_node = max((n for n in counts if n != controller), key=lambda n: counts[n])
        victim_http = next(b["http"] for b in view["brokers"] if b["node_id"] == victim_node)
        victim = next(p for p in procs if p.http == victim_http)
        survivor = next(p for p in procs if p is not victim)
        parts = [p for p, n in leaders(survivor, "bench").items() if n == victim_node]
        prod = Producer({"bootstrap.servers": survivor.bootstrap, "acks": "all", "message.timeout.ms": 60000,
                         "topic.metadata.refresh.interval.ms": 250, "retry.backoff.ms": 50})
        prod.produce("bench", value=b"warm", partition=parts[0])
        prod.flush(30)
        t0 = time.monotonic()
        victim.kill9()
        done: dict[int, float] = {}
        for part in parts:
            prod.produce("bench", value=b"after-kill", partition=part,
                         on_delivery=lambda e, m, p=part: done.setdefault(p, time.monotonic()) if e is None else None)
        prod.flush(60)
        failover = max(done.values()) - t0 if len(done) == len(parts) else float("nan")
        result = {
            "store": args.store,
            "moves_per_size": args.moves,
            "small_mb": args.small_mb,
            "large_mb": args.large_mb,
            "reassign_small_p50_ms": round(statistics.median(times[0]) * 1000, 1),
            "reassign_small_p99_ms": round(pct(times[0], 0.99) * 1000, 1),
            "reassign_large_p50_ms": round(statistics.median(times[1]) * 1000, 1),
            "reassign_large_p99_ms": round(pct(times[1], 0.99) * 1000, 1),
            "session_timeout_s": args.session_timeout_ms / 1000,
            "failover_partitions": len(parts),
            "kill9_to_served_s": round(failover, 2),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}",
        }
        print(json.dumps(result))
    finally:
        for p in procs:
            p.stop()
        if rgw is not None:
            rgw.stop()


if __name__ == "__main__":
    main()
