"""Catch-up reads: how close a consumer of old data comes to what the object store itself delivers.

    .venv/bin/python benchmarks/catchup.py --store moto --mb 200
    .venv/bin/python benchmarks/catchup.py --store radosgw --mb 200

One broker on a fresh store (moto, a throwaway Ceph radosgw, or ``file://``)
takes ``--mb`` of records, consolidates them into shared data objects, and is
restarted so neither its memory tail nor its block cache holds any of it: the
data is now "far older than the memory cache". Then, in the same run:

- **Floe**: one librdkafka consumer reads every partition from offset 0
  (MB/s of record values), while a probe producer writes 50 small records a
  second to another topic (its ack p50/p99 say whether catch-up stalls
  producers); the broker's GETs and bytes read from ``/metrics``;
- **raw**: a boto3 (or ``os.pread``) loop reads the same consolidated objects
  in 4 MiB ranges, as Floe's block cache does, one range at a time and with
  4 ranges in flight: what the store can deliver to one reader.

It prints a table and, last, one JSON line. Nothing is asserted; figures go
in the README and docs/benchmarks.md with the command and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from benchmarks.common import (  # noqa: E402
    consume_all,
    create_topic,
    latency_ms,
    produce_at_rate,
    produce_saturated,
    producer,
)
from benchmarks.cost import object_store  # noqa: E402

from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402

RANGE = 4 * 1024 * 1024  # Floe's block size for consolidated objects


def kind_sum(text: str, name: str, kind: str, op: str | None = None) -> float:
    total = 0.0
    for labels, value in re.findall(rf"^{name}{{([^}}]*)}} ([0-9.e+]+)$", text, re.M):
        if f'kind="{kind}"' in labels and (op is None or f'op="{op}"' in labels):
            total += float(value)
    return total


def object_reader(storage: str, cluster: str, env: dict[str, str],
                  flags: list[str]) -> tuple[list[tuple[str, int]], Callable[[str, int, int], int]]:
    """The consolidated objects of the store (key, size) and a function reading one range of one."""
    if storage.startswith("file://"):
        root = Path(storage[len("file://"):]) / cluster
        files = sorted((root / "data" / "s").rglob("*"))
        objects = [(str(f), f.stat().st_size) for f in files if f.is_file()]

        def read_file(key: str, pos: int, size: int) -> int:
            with open(key, "rb") as fh:
                return len(os.pread(fh.fileno(), size, pos))

        return objects, read_file
    import boto3

    endpoint = flags[flags.index("--s3-endpoint") + 1]
    region = flags[flags.index("--s3-region") + 1]
    bucket, _, prefix = storage[len("s3://"):].partition("/")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    objects: list[tuple[str, int]] = []
    root = f"{prefix}/{cluster}" if prefix else cluster
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{root}/data/s/"):
        objects += [(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]

    def read_s3(key: str, pos: int, size: int) -> int:
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={pos}-{pos + size - 1}")
        return len(got["Body"].read())

    return objects, read_s3


def raw_mbps(objects: list[tuple[str, int]], read: Callable[[str, int, int], int], in_flight: int) -> float:
    ranges = [(k, pos, min(RANGE, size - pos)) for k, size in objects for pos in range(0, size, RANGE)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        nbytes = sum(pool.map(lambda r: read(*r), ranges))
    return nbytes / 1e6 / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="floe-catchup-"))
    with object_store(args.store, tmp) as (storage, env, flags):
        extra = [*flags, "--memory-cache-bytes", str(16 << 20), "--block-cache-bytes", str(64 << 20),
                 "--compact-after-bytes", str(1 << 20), "--compact-after-ms", "1000"]
        b = BrokerProcess(storage=storage, cluster="catchup", log_path=tmp / "broker.log", env=env, extra=extra)
        b.start(timeout=120)
        try:
            topic, probe_topic = "old", "probe"
            create_topic(b.bootstrap, topic, args.partitions)
            create_topic(b.bootstrap, probe_topic, 1)
            value = os.urandom(args.record_size)
            count = int(args.mb * 1e6 / args.record_size)
            print(f"  producing {args.mb} MB", file=sys.stderr, flush=True)
            produce_saturated(producer(b.bootstrap), topic, value, count, progress=False)
            produced = count * args.record_size

            def consolidated() -> bool:
                return kind_sum(b.metrics_text(), "floe_objectstore_written_bytes_total", "data") >= 0.95 * produced

            print("  waiting for consolidation", file=sys.stderr, flush=True)
            wait_until(consolidated, 600, interval=1, message="the records consolidated into data objects")
            b.terminate(120)
            b.start(timeout=120)  # empty memory tail and block cache
            before = b.metrics_text()

            probe_latencies: list[float] = []
            stop = threading.Event()

            def probe() -> None:
                p = producer(b.bootstrap, **{"linger.ms": 0})
                while not stop.is_set():
                    probe_latencies.extend(produce_at_rate(p, probe_topic, b"p" * 100, 50, 1.0))

            prober = threading.Thread(target=probe, daemon=True)
            prober.start()
            print("  catching up", file=sys.stderr, flush=True)
            got, nbytes, seconds = consume_all(b.bootstrap, topic, args.partitions, count, timeout=900)
            stop.set()
            prober.join(30)
            after = b.metrics_text()
            gets = kind_sum(after, "floe_objectstore_requests_total", "data", "get_range") - kind_sum(
                before, "floe_objectstore_requests_total", "data", "get_range")
            read = kind_sum(after, "floe_objectstore_read_bytes_total", "data") - kind_sum(
                before, "floe_objectstore_read_bytes_total", "data")
            objects, reader = object_reader(storage, "catchup", env, flags)
            print(f"  raw ranged GETs over {len(objects)} objects", file=sys.stderr, flush=True)
            raw1 = raw_mbps(objects, reader, 1)
            raw4 = raw_mbps(objects, reader, 4)
            floe = nbytes / 1e6 / seconds
            return {
                "store": args.store,
                "partitions": args.partitions,
                "record_bytes": args.record_size,
                "MB": round(produced / 1e6, 1),
                "records_read": got,
                "floe_catchup_MBps": round(floe, 1),
                "raw_1_in_flight_MBps": round(raw1, 1),
                "raw_4_in_flight_MBps": round(raw4, 1),
                "floe_over_raw_1": round(floe / raw1, 2) if raw1 else None,
                "floe_over_raw_4": round(floe / raw4, 2) if raw4 else None,
                "data_gets": int(gets),
                "MiB_per_get": round(read / max(gets, 1) / (1 << 20), 2),
                "consolidated_objects": len(objects),
                "probe_produce": latency_ms(probe_latencies),
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
                           f"{platform.python_version()}",
                "load_avg_1m_end": round(os.getloadavg()[0], 1),
            }
        finally:
            if b.proc is not None and b.proc.poll() is None:
                b.terminate(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["file", "moto", "radosgw"], default="moto")
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--record-size", type=int, default=16 * 1024)
    r = run(ap.parse_args())
    print(f"| store | Floe catch-up MB/s | raw 1 in flight | raw 4 in flight | Floe/raw(1) | Floe/raw(4) "
          f"| MiB per GET | probe produce p50/p99 ms |\n|---|---|---|---|---|---|---|---|\n"
          f"| {r['store']} | {r['floe_catchup_MBps']} | {r['raw_1_in_flight_MBps']} | {r['raw_4_in_flight_MBps']} "
          f"| {r['floe_over_raw_1']} | {r['floe_over_raw_4']} | {r['MiB_per_get']} "
          f"| {r['probe_produce']['p50_ms']} / {r['probe_produce']['p99_ms']} |")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
