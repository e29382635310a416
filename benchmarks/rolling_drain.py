"""Produce latency during a rolling drain of every broker (what a Kubernetes rollout does).

    .venv/bin/python benchmarks/rolling_drain.py --rate-mb 10

Three brokers on a file:// store; a producer at a fixed rate (1 KiB records,
acks=all, 12 partitions). After a steady phase, each original broker in turn
gets SIGTERM (it drains: its partitions move away), a replacement is started
and must be ready before the next one goes. Prints produce p50/p99 for the
steady phase and for the rollout, the number of records acknowledged and any
delivery errors. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402
from tests.test_cluster import cluster_view  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values) or [float("nan")]
    return s[min(len(s) - 1, max(0, int(len(s) * q) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate-mb", type=float, default=10.0)
    ap.add_argument("--steady-s", type=float, default=10.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="floe-rolling-"))
    storage = f"file://{tmp / 'bucket'}"
    n = 0

    def start() -> BrokerProcess:
        nonlocal n
        n += 1
        return BrokerProcess(storage=storage, cluster="roll", log_path=tmp / f"b{n}.log", env={},
                             extra=["--fsync", "false"]).start()

    procs = [start() for _ in range(3)]
    try:
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30)
        bootstrap = ",".join(p.bootstrap for p in procs)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("roll", 12, 1)])["roll"].result(30)
        samples: list[tuple[float, float]] = []  # (sent at, latency)
        errors: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                          "message.timeout.ms": 60000, "topic.metadata.refresh.interval.ms": 1000})
            per_s = args.rate_mb * 1024 * 1024 / 1024
            value = os.urandom(1024)
            t0 = time.perf_counter()
            i = 0
            while not stop.is_set():
                due = t0 + i / per_s
                now = time.perf_counter()
                if now < due:
                    p.poll(min(due - now, 0.002))
                    continue

                def cb(err, _m, s=now):  # type: ignore[no-untyped-def]
                    if err is None:
                        samples.append((s, time.perf_counter() - s))
                    else:
                        errors.append(str(err))

                try:
                    p.produce("roll", value=value, partition=i % 12, on_delivery=cb)
                    i += 1
                except BufferError:
                    p.poll(0.01)
            p.flush(60)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        time.sleep(args.steady_s)  # the steady phase is a duration, not a synchronisation
        roll_start = time.perf_counter()
        for old in list(procs):
            code = old.terminate(120)
            print(f"  drained {old.http}: exit {code}", file=sys.stderr, flush=True)
            procs.remove(old)
            procs.append(start())
            wait_until(lambda: len(cluster_view(procs[-1])["brokers"]) == 3, 30)
        roll_end = time.perf_counter()
        time.sleep(2)
        stop.set()
        t.join(90)
        steady = [lat for s, lat in samples if s < roll_start]
        rolling = [lat for s, lat in samples if roll_start <= s <= roll_end]
        print(json.dumps({
            "rate_MBps": args.rate_mb,
            "acked": len(samples),
            "delivery_errors": len(errors),
            "steady_p50_ms": round(statistics.median(steady) * 1000, 1),
            "steady_p99_ms": round(pct(steady, 0.99) * 1000, 1),
            "rolling_p50_ms": round(statistics.median(rolling) * 1000, 1),
            "rolling_p99_ms": round(pct(rolling, 0.99) * 1000, 1),
            "rolling_max_ms": round(max(rolling) * 1000, 1),
            "rollout_s": round(roll_end - roll_start, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}",
        }))
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
