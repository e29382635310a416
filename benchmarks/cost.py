"""What a workload costs in object-store requests, measured on real brokers.

    .venv/bin/python benchmarks/cost.py --store moto --partitions 1000 --mb-per-s 2 --profile cost
    .venv/bin/python benchmarks/cost.py --store file --partitions 10 --profile latency

For one workload shape (brokers, partitions, MB/s, record size, consumers)
this starts real broker processes on a store (``file://`` in a temp dir, a
moto S3 server, or a throwaway Ceph radosgw), creates one topic, produces at
a fixed rate with confluent-kafka (acks=all, records spread round-robin over
the partitions) while consumers in one group read everything back, and after
a warm-up counts, over a window, from the brokers' ``/metrics``:

- object-store requests per second by key kind (wal, data, checkpoint,
  cluster, lease, meta) and operation (PUT, GET, LIST, DELETE, HEAD), from
  ``floe_objectstore_requests_total``;
- bytes per object written (p50 and p99 interpolated within the
  ``floe_objectstore_put_bytes`` histogram's power-of-two buckets; mean exact);
- objects created per hour (create-only PUTs: WAL and data objects);
- why WAL flushes were cut (``floe_wal_flushes_total``: interval, size, barrier);
- produce latency p50 / p99 (enqueue to delivery report), beside the WAL
  PUT latency p50 / p99 (``floe_wal_put_seconds``, interpolated in its
  buckets): at the cost profile's default a produce should wait at most the
  flush interval plus a PUT;
- the monthly request bill at AWS S3 Standard list prices ($0.005 per 1,000
  PUT, COPY, POST or LIST; $0.0004 per 1,000 GET and other requests; DELETE
  free), as if the window's rates held for 30 days.

It prints a table and, last, one JSON line. Nothing is asserted: figures go
in the README and docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "broker")]

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.infra.broker import BrokerProcess  # noqa: E402

# AWS S3 Standard request prices (us-east-1 list prices), dollars per request.
PRICE_PUT_CLASS = 0.005 / 1000  # PUT, COPY, POST, LIST
PRICE_GET_CLASS = 0.0004 / 1000  # GET, SELECT and every other request (HEAD)
SECONDS_PER_MONTH = 30 * 24 * 3600

# The broker's store operations, as an S3 bill names them.
OPS = {"put": "PUT", "get": "GET", "get_range": "GET", "get_suffix": "GET", "head": "HEAD",
       "list": "LIST", "delete": "DELETE"}
PRICE = {"PUT": PRICE_PUT_CLASS, "LIST": PRICE_PUT_CLASS, "GET": PRICE_GET_CLASS, "HEAD": PRICE_GET_CLASS,
         "DELETE": 0.0}
KINDS = ("wal", "data", "checkpoint", "cluster", "lease", "meta", "other")
CREATE_ONLY_KINDS = ("wal", "data")  # every PUT of these makes a new object

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(brokers: list[BrokerProcess]) -> Samples:
    """The sum over every broker of each metric sample."""
    total: Samples = defaultdict(float)
    for b in brokers:
        for fam in text_string_to_metric_families(b.metrics_text()):
            for s in fam.samples:
                total[(s.name, frozenset(s.labels.items()))] += s.value
    return total


def delta(after: Samples, before: Samples, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(labels), value - before.get((n, labels), 0.0))
            for (n, labels), value in after.items() if n == name]


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative (le, count) pairs, linear within a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return lower


def summarize(before: Samples, after: Samples, seconds: float) -> dict[str, Any]:
    per_kind: dict[str, dict[str, float]] = {k: defaultdict(float) for k in KINDS}
    for labels, n in delta(after, before, "floe_objectstore_requests_total"):
        per_kind.setdefault(labels["kind"], defaultdict(float))[OPS.get(labels["op"], labels["op"])] += n
    rates = {kind: {op: round(n / seconds, 2) for op, n in sorted(ops.items()) if n}
             for kind, ops in per_kind.items() if any(ops.values())}
    by_op: dict[str, float] = defaultdict(float)
    for ops in per_kind.values():
        for op, n in ops.items():
            by_op[op] += n
    monthly = {op: n / seconds * SECONDS_PER_MONTH * PRICE.get(op, PRICE_GET_CLASS) for op, n in by_op.items()}

    sizes: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for labels, n in delta(after, before, "floe_objectstore_put_bytes_bucket"):
        buckets[labels["kind"]].append((float(labels["le"]), n))
    sums = {labels["kind"]: n for labels, n in delta(after, before, "floe_objectstore_put_bytes_sum")}
    counts = {labels["kind"]: n for labels, n in delta(after, before, "floe_objectstore_put_bytes_count")}
    for kind, bs in buckets.items():
        if counts.get(kind, 0) > 0:
            sizes[kind] = {"p50": round(histogram_quantile(bs, 0.5)), "p99": round(histogram_quantile(bs, 0.99)),
                           "mean": round(sums.get(kind, 0) / counts[kind])}
    wal_put = [(float(labels["le"]), n) for labels, n in delta(after, before, "floe_wal_put_seconds_bucket")]
    created = sum(per_kind.get(k, {}).get("PUT", 0.0) for k in CREATE_ONLY_KINDS)
    flushes = {labels["reason"]: round(n / seconds, 2)
               for labels, n in delta(after, before, "floe_wal_flushes_total") if n}
    total = sum(monthly.values())
    written = {labels["kind"]: round(n / seconds / 1e6, 3)
               for labels, n in delta(after, before, "floe_objectstore_written_bytes_total") if n}
    return {
        # WAL bytes written per second against the produce rate: did the broker keep up?
        "written_MBps": written,
        "requests_per_s": rates,
        "requests_per_s_by_op": {op: round(n / seconds, 2) for op, n in sorted(by_op.items())},
        "wal_put_per_s": round(per_kind.get("wal", {}).get("PUT", 0.0) / seconds, 2),
        "wal_flushes_per_s": flushes,
        "wal_put_p50_ms": round(histogram_quantile(wal_put, 0.5) * 1000, 1),
        "wal_put_p99_ms": round(histogram_quantile(wal_put, 0.99) * 1000, 1),
        "object_bytes": sizes,
        "objects_created_per_hour": round(created / seconds * 3600),
        "monthly_usd": {op: round(v, 2) for op, v in sorted(monthly.items())},
        "monthly_usd_total": round(total, 2),
        "monthly_usd_wal_put": round(per_kind.get("wal", {}).get("PUT", 0.0) / seconds * SECONDS_PER_MONTH
                                     * PRICE_PUT_CLASS, 2),
    }


@contextmanager
def object_store(kind: str, tmp: Path) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """(storage URL, broker environment, broker flags) for a fresh store of ``kind``."""
    if kind == "file":
        yield f"file://{tmp / 'bucket'}", {}, ["--fsync", "false"]
    elif kind == "moto":
        from tests.infra.moto_server import MotoServer

        with MotoServer() as moto:
            yield (f"s3://{moto.bucket}/cost", {"AWS_ACCESS_KEY_ID": moto.access_key,
                                                "AWS_SECRET_ACCESS_KEY": moto.secret_key},
                   ["--s3-endpoint", moto.endpoint, "--s3-region", "us-east-1", "--s3-path-style"])
    else:
        import boto3

        from tests.infra.radosgw import Radosgw, radosgw_available

        ok, reason = radosgw_available()
        if not ok:
            raise SystemExit(f"radosgw not available: {reason}")
        with Radosgw(tmp / "rgw") as rgw:
            boto3.client("s3", endpoint_url=rgw.endpoint, region_name=rgw.region,
                         aws_access_key_id=rgw.access_key,
                         aws_secret_access_key=rgw.secret_key).create_bucket(Bucket="floe-cost")
            yield ("s3://floe-cost/cost", {"AWS_ACCESS_KEY_ID": rgw.access_key,
                                           "AWS_SECRET_ACCESS_KEY": rgw.secret_key,
                                           "AWS_DEFAULT_REGION": rgw.region},
                   ["--s3-endpoint", rgw.endpoint, "--s3-region", rgw.region, "--s3-path-style"])


class Consumers:
    """``n`` consumers of one group reading the topic in threads, counting bytes."""

    def __init__(self, bootstrap: str, topic: str, n: int) -> None:
        self.bytes = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(bootstrap, topic), daemon=True)
                         for _ in range(n)]
        for t in self._threads:
            t.start()

    def _run(self, bootstrap: str, topic: str) -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cost", "auto.offset.reset": "earliest",
                      "enable.auto.commit": True})
        c.subscribe([topic])
        try:
            while not self._stop.is_set():
                for m in c.consume(1000, 0.5):
                    if not m.error():
                        with self._lock:
                            self.bytes += len(m.value() or b"")
        finally:
            c.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def produce_paced(p: Producer, topic: str, partitions: int, record: bytes, per_s: float, seconds: float,
                  latencies: list[float] | None, first: int = 0) -> int:
    """Produce ``per_s`` records a second for ``seconds``, round-robin over the partitions."""
    start = time.perf_counter()
    n = 0

    def report(err: Any, _msg: Any, sent: float) -> None:
        if err is None and latencies is not None:
            latencies.append(time.perf_counter() - sent)

    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            return n
        due = start + n / per_s
        if now < due:
            p.poll(min(due - now, 0.01))
            continue
        try:
            p.produce(topic, record, partition=(first + n) % partitions,
                      on_delivery=lambda e, m, s=now: report(e, m, s))
            n += 1
        except BufferError:
            p.poll(0.01)


def wait_for_topic(admin: AdminClient, topic: str, partitions: int, within_s: float) -> None:
    """Until the metadata shows ``topic`` with every partition led (polling once a second)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            found = admin.list_topics(topic, timeout=30).topics.get(topic)
        except KafkaException:
            found = None
        if found is not None and found.error is None and len(found.partitions) == partitions and all(
                p.leader >= 0 for p in found.partitions.values()):
            return
        time.sleep(1)
    raise SystemExit(f"topic {topic} with {partitions} partitions not ready after {within_s:.0f} s")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="floe-cost-"))
    with object_store(args.store, tmp) as (storage, env, flags):
        extra = [*flags]
        if args.profile != "auto":
            extra += ["--flush-profile", args.profile]
        extra += args.broker_arg
        brokers = [BrokerProcess(storage=storage, cluster="cost", log_path=tmp / f"broker-{i}.log", env=env,
                                 extra=extra) for i in range(args.brokers)]
        try:
            for b in brokers:
                b.start(timeout=120)
            bootstrap = ",".join(b.bootstrap for b in brokers)
            topic = "cost"
            t0 = time.perf_counter()
            # Kept alive until the topic exists; opening thousands of partitions on a busy machine
            # takes longer than librdkafka's default 60 s socket timeout (and can take longer than
            # its 300 s maximum: then wait for the metadata to show every partition led).
            admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 300_000})
            try:
                admin.create_topics([NewTopic(topic, args.partitions, 1)], request_timeout=600)[topic].result(600)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._TIMED_OUT:
                    raise
                wait_for_topic(admin, topic, args.partitions, within_s=1200)
            print(f"  topic with {args.partitions} partitions created in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
            record = os.urandom(args.record_size)
            per_s = args.mb_per_s * 1e6 / args.record_size
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                          "batch.size": 1024 * 1024, "compression.type": "none"})
            consumers = Consumers(bootstrap, topic, args.consumers) if args.consumers else None
            try:
                print(f"  warm-up {args.warmup_s:.0f} s", file=sys.stderr, flush=True)
                sent = produce_paced(p, topic, args.partitions, record, per_s, args.warmup_s, None)
                before = scrape(brokers)
                w0 = time.perf_counter()
                latencies: list[float] = []
                print(f"  window {args.window_s:.0f} s", file=sys.stderr, flush=True)
                window_sent = produce_paced(p, topic, args.partitions, record, per_s, args.window_s, latencies,
                                            first=sent)
                seconds = time.perf_counter() - w0
                after = scrape(brokers)
                p.flush(60)
            finally:
                if consumers is not None:
                    consumers.stop()
            result = {
                "store": args.store,
                "profile": args.profile,
                "brokers": args.brokers,
                "partitions": args.partitions,
                "target_MBps": args.mb_per_s,
                "produced_MBps": round(window_sent * args.record_size / 1e6 / seconds, 2),
                "record_bytes": args.record_size,
                "consumers": args.consumers,
                "window_s": round(seconds, 1),
                "produce_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
                "produce_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                **summarize(before, after, seconds),
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
                           f"{platform.python_version()}",
                # Latency figures mean little when the machine is oversubscribed: say how busy it was.
                "load_avg_1m_end": round(os.getloadavg()[0], 1),
            }
            return result
        finally:
            for b in brokers:
                try:
                    b.terminate(60)
                except Exception:  # noqa: BLE001 - a broker that does not stop is killed below
                    pass
                b.stop()


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['store']} · profile {r['profile']} · {r['brokers']} broker(s) · {r['partitions']} partitions · "
        f"{r['produced_MBps']} MB/s produced · {r['consumers']} consumer(s) · {r['window_s']} s window",
        f"produce p50 / p99: {r['produce_p50_ms']} / {r['produce_p99_ms']} ms (load average {r['load_avg_1m_end']}); "
        f"WAL PUT p50 / p99: {r['wal_put_p50_ms']} / {r['wal_put_p99_ms']} ms; "
        f"WAL flushes/s by reason: {r['wal_flushes_per_s']}",
        "",
        "| kind | PUT/s | GET/s | LIST/s | DELETE/s | HEAD/s | object bytes p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, ops in r["requests_per_s"].items():
        size = r["object_bytes"].get(kind)
        size_s = f"{size['p50']:,} / {size['p99']:,}" if size else ""
        lines.append(f"| {kind} | " + " | ".join(str(ops.get(op, 0)) for op in ("PUT", "GET", "LIST", "DELETE", "HEAD"))
                     + f" | {size_s} |")
    lines += [
        "",
        f"objects created per hour: {r['objects_created_per_hour']:,}",
        f"monthly requests at S3 list prices: ${r['monthly_usd_total']:,} "
        f"(WAL PUTs ${r['monthly_usd_wal_put']:,}; by operation {r['monthly_usd']})",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["file", "moto", "radosgw"], default="file")
    ap.add_argument("--profile", choices=["auto", "latency", "cost"], default="auto",
                    help="--flush-profile given to the brokers (auto: the store's default)")
    ap.add_argument("--brokers", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--mb-per-s", type=float, default=2.0)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--consumers", type=int, default=1)
    # Longer than the collector's interval (30 s), so its first pass, which reads every new
    # partition checkpoint once, falls in the warm-up and the window shows steady passes.
    ap.add_argument("--warmup-s", type=float, default=40.0)
    ap.add_argument("--window-s", type=float, default=60.0)
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra broker flag, repeatable (e.g. --broker-arg=--checkpoint-interval-ms=10000)")
    result = run(ap.parse_args())
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
