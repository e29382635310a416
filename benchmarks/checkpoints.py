"""Object-store requests of the log's background writes at many partitions, as figures.

    .venv/bin/python benchmarks/checkpoints.py --partitions 1000 --mb-per-s 2 --seconds 60
    .venv/bin/python benchmarks/checkpoints.py --source /tmp/floe-before ...   # another checkout

Starts one broker on a fresh ``file://`` store, creates a topic with
``--partitions`` partitions, produces 1 KiB records spread evenly over them
at ``--mb-per-s`` (acks=all), waits ``--warmup`` seconds, then measures a
``--seconds`` window from the broker's own ``/metrics``
(``floe_objectstore_requests_total`` by op and kind): checkpoint, WAL and
data PUTs per second, meta GETs per second, and the count and mean size of
the data objects written in the window (from the store directory).
``--source`` runs the broker from another checkout's source roots, for a
before/after comparison (a checkout without the ``checkpoint`` kind counts
per-partition checkpoints as ``meta``). Prints one JSON line; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.infra.broker import free_port, wait_until  # noqa: E402

SAMPLE = re.compile(r'^floe_objectstore_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def requests(http: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = dict(kv.split("=", 1) for kv in m["labels"].split(","))
            out[(labels["op"].strip('"'), labels["kind"].strip('"'))] = float(m["value"])
    return out


def data_objects(store_dir: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in store_dir.rglob("*") if p.is_file() and "/data/" in str(p)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--mb-per-s", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--source", type=Path, default=ROOT, help="checkout whose broker to run")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="floe-bench-ck-"))
    store_dir = work / "store"
    store_dir.mkdir()
    kafka, http = free_port(), free_port()
    env = {**os.environ, "FLOE_LOG_FORMAT": "json",
           "PYTHONPATH": os.pathsep.join(str(args.source / r) for r in ("api", "broker", "cli"))}
    with open(work / "broker.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "floe_cli", "broker", "--storage", f"file://{store_dir}", "--cluster", "bench",
             "--listen", f"127.0.0.1:{kafka}", "--http", f"127.0.0.1:{http}", "--auto-create-topics", "false"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2).status == 200,
                   60, message="broker ready")
        bootstrap = f"127.0.0.1:{kafka}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fut in admin.create_topics([NewTopic("bench", args.partitions, 1)], request_timeout=60).values():
            fut.result(120)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                             "queue.buffering.max.messages": 1_000_000})
        value = os.urandom(1024)
        rate = args.mb_per_s * 1024  # records per second
        start = time.monotonic()
        sent = 0
        snapshots: dict[str, tuple[float, dict[tuple[str, str], float], dict[str, int]]] = {}
        while True:
            now = time.monotonic()
            elapsed = now - start
            if "begin" not in snapshots and elapsed >= args.warmup:
                snapshots["begin"] = (now, requests(f"127.0.0.1:{http}"), data_objects(store_dir))
            if elapsed >= args.warmup + args.seconds:
                snapshots["end"] = (now, requests(f"127.0.0.1:{http}"), data_objects(store_dir))
                break
            due = int(elapsed * rate)
            while sent < due:
                try:
                    producer.produce("bench", value=value, partition=sent % args.partitions)
                    sent += 1
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
            time.sleep(0.005)
        producer.flush(60)
        (t0, r0, d0), (t1, r1, d1) = snapshots["begin"], snapshots["end"]
        span = t1 - t0

        def per_s(op: str, kind: str) -> float:
            return round((r1.get((op, kind), 0.0) - r0.get((op, kind), 0.0)) / span, 2)

        new = [size for path, size in d1.items() if path not in d0]
        print(json.dumps({
            "partitions": args.partitions, "mb_per_s": args.mb_per_s, "window_s": round(span, 1),
            "source": str(args.source),
            "checkpoint_put_per_s": per_s("put", "checkpoint"), "meta_put_per_s": per_s("put", "meta"),
            "meta_get_per_s": per_s("get", "meta"), "checkpoint_get_per_s": per_s("get", "checkpoint"),
            "wal_put_per_s": per_s("put", "wal"), "data_put_per_s": per_s("put", "data"),
            "data_objects_in_window": len(new),
            "mean_data_object_bytes": int(sum(new) / len(new)) if new else 0,
        }))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


if __name__ == "__main__":
    main()
