"""Floe beside Apache Kafka: the same workloads, the same clients, the same machine, one run.

    .venv/bin/python benchmarks/vs_kafka.py            # the full comparison
    .venv/bin/python benchmarks/vs_kafka.py --quick    # a smoke run: small volumes, short phases

Single server: one Kafka node (KRaft, broker+controller, log dirs under
``--dir``) and then one Floe broker (``file://`` store under the same
``--dir``, so both write to the same disk), each alone on the machine while it
is measured, after a warm-up produce (``--warmup-mb``) that keeps the JVM's
just-in-time compilation out of Kafka's figures. Neither fsyncs per write (Kafka's default; Floe with
``--fsync false``). For each partition count (8 and 1,000):

- produce MB/s and consume MB/s with librdkafka (confluent-kafka, acks=all,
  1 KiB records, the producer settings of ``benchmarks/common.py``);
- produce and consume MB/s with Kafka's own ``kafka-producer-perf-test`` and
  ``kafka-consumer-perf-test`` (``ProducerPerformance`` / ``ConsumerPerformance``
  on the same jars; the consumer figure is its fetch rate, without the group join);
- produce p50/p99 at fixed rates of 25 %, 50 % and 75 % of the maximum
  librdkafka produce rate Kafka reached on that partition count;
- server CPU seconds per GB produced and per GB consumed (utime+stime from
  /proc/<pid>/stat around each librdkafka phase), and the server's peak RSS
  (VmHWM from /proc/<pid>/status).

Replicated: three Kafka nodes and a topic with replication factor 3
(min.insync.replicas 2, acks=all) against three Floe brokers on one store
(Floe keeps one logical copy; the store's own redundancy is the replication).
Per byte produced: bytes the servers wrote to disk (Kafka: the partition
segment files, ``*.log``, in every log dir; Floe: ``floe_objectstore_written_bytes_total``
from every broker's /metrics), bytes the server processes handed to the block
layer (/proc/<pid>/io ``write_bytes``), and bytes sent between servers,
counted on the client side of every TCP connection one server holds to
another's listening port (``ss -tin``: ``bytes_sent`` + ``bytes_received``
of each such socket, sampled before and after the phase); that covers
Kafka's replica fetchers, which keep their connections open; connections
opened and closed within the phase are not seen.

Prints one table per section (figure, Kafka, Floe, Floe/Kafka) and, last, one
JSON line with every figure. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from benchmarks.common import (  # noqa: E402
    consume_all,
    create_topic,
    latency_ms,
    machine,
    metric_sum,
    proc_sample,
    produce_at_rate,
    produce_saturated,
    producer,
)

from tests.infra.apache_kafka import (  # noqa: E402
    CONSUMER_PERFORMANCE,
    KAFKA_VERSION,
    PRODUCER_PERFORMANCE,
    KafkaCluster,
    kafka_jars,
    run_tool,
)
from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402

GB = 1e9
MB = 1e6
RATE_FRACTIONS = (0.25, 0.50, 0.75)
PERF_PRODUCER_PROPS = ("acks=all", "linger.ms=5", "batch.size=262144", "buffer.memory=268435456",
                       "compression.type=none")


class Server:
    """What the workloads need of a server under test: where to connect, which processes to watch."""

    def __init__(self, name: str, bootstrap: str, pids: list[int], listen_ports: set[int],
                 stop: Callable[[], None]) -> None:
        self.name, self.bootstrap, self.pids, self.listen_ports, self.stop = name, bootstrap, pids, listen_ports, stop

    def cpu(self) -> float:
        return sum(proc_sample(p).cpu_seconds for p in self.pids)

    def peak_rss(self) -> int:
        return max(proc_sample(p).peak_rss_bytes for p in self.pids)

    def write_bytes(self) -> int:
        return sum(proc_sample(p).write_bytes for p in self.pids)


def start_kafka(base: Path, size: int, heap: str) -> Server:
    cluster = KafkaCluster(base / f"kafka-{size}", size=size, heap=heap).start()
    ports = {n.port for n in cluster.nodes} | {n.controller_port for n in cluster.nodes}
    server = Server("kafka", cluster.bootstrap, cluster.pids, ports, cluster.stop)
    server.kafka = cluster  # type: ignore[attr-defined]
    return server


def start_floe(base: Path, size: int, flush_ms: int) -> Server:
    store = base / f"floe-{size}" / "bucket"
    store.parent.mkdir(parents=True, exist_ok=True)
    brokers = [BrokerProcess(storage=f"file://{store}", cluster="vs", log_path=store.parent / f"broker-{i}.log",
                             env={}, extra=["--flush-interval-ms", str(flush_ms), "--fsync", "false"]).start()
               for i in range(size)]
    wait_until(lambda: len(brokers[0].get("/v1/cluster")[1].get("brokers", [])) == size, 60,
               message=f"{size} Floe brokers registered")

    def stop() -> None:
        for b in brokers:
            try:
                b.terminate(60)
            finally:
                b.stop()

    ports = {b.kafka_port for b in brokers} | {b.http_port for b in brokers}
    server = Server("floe", ",".join(b.bootstrap for b in brokers), [b.proc.pid for b in brokers if b.proc],
                    ports, stop)
    server.floe = brokers  # type: ignore[attr-defined]
    return server


# --- workloads ------------------------------------------------------------------


def librdkafka_phase(server: Server, topic: str, partitions: int, count: int, value: bytes) -> dict[str, float]:
    p = producer(server.bootstrap)
    cpu0 = server.cpu()
    latencies, seconds = produce_saturated(p, topic, value, count)
    cpu1 = server.cpu()
    produced = len(latencies) * len(value)
    got, nbytes, consume_s = consume_all(server.bootstrap, topic, partitions, len(latencies))
    cpu2 = server.cpu()
    return {
        "produce_MBps": round(produced / MB / seconds, 1),
        "consume_MBps": round(nbytes / MB / consume_s, 1) if got else 0.0,
        "cpu_s_per_GB_produced": round((cpu1 - cpu0) / (produced / GB), 1) if produced else float("nan"),
        "cpu_s_per_GB_consumed": round((cpu2 - cpu1) / (nbytes / GB), 1) if nbytes else float("nan"),
        "records_acked": len(latencies),
        "records_consumed": got,
    }


def perf_tool_phase(server: Server, topic: str, count: int, record_size: int) -> dict[str, float]:
    """Kafka's own perf tools; each figure is records/s times the record size, in MB (1e6) per second."""
    out: dict[str, float] = {}
    prod = run_tool(PRODUCER_PERFORMANCE, "--topic", topic, "--num-records", str(count), "--record-size",
                    str(record_size), "--throughput", "-1", "--producer-props",
                    f"bootstrap.servers={server.bootstrap}", *PERF_PRODUCER_PROPS, heap="1g", timeout=900)
    sent = [line for line in prod.stdout.splitlines() if "records sent" in line]
    m = re.search(r"records sent, ([0-9.]+) records/sec", sent[-1]) if sent else None
    out["perf_produce_MBps"] = round(float(m.group(1)) * record_size / MB, 1) if m else float("nan")
    if m is None:
        print(f"  {server.name}: ProducerPerformance gave no result:\n{prod.stdout[-2000:]}\n{prod.stderr[-2000:]}",
              file=sys.stderr)
    cons = run_tool(CONSUMER_PERFORMANCE, "--bootstrap-server", server.bootstrap, "--topic", topic,
                    "--messages", str(count), "--timeout", "60000", "--group", f"perf-{topic}", heap="1g",
                    timeout=900)
    out["perf_consume_MBps"] = _consumer_perf_rate(cons.stdout, record_size)
    if out["perf_consume_MBps"] != out["perf_consume_MBps"]:  # NaN: say why
        print(f"  {server.name}: ConsumerPerformance gave no result:\n{cons.stdout[-2000:]}\n{cons.stderr[-2000:]}",
              file=sys.stderr)
    return out


def _consumer_perf_rate(stdout: str, record_size: int) -> float:
    """``fetch.nMsg.sec`` of ConsumerPerformance's CSV line (the rate without the group join), in MB/s."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time"):
            header = [h.strip() for h in line.split(",")]
            if i + 1 < len(lines):
                row = dict(zip(header, (v.strip() for v in lines[i + 1].split(",")), strict=False))
                try:
                    return round(float(row["fetch.nMsg.sec"]) * record_size / MB, 1)
                except (KeyError, ValueError):
                    return float("nan")
    return float("nan")


def latency_phase(server: Server, topic: str, value: bytes, rates_MBps: Iterable[float],
                  seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    p = producer(server.bootstrap)
    for fraction, rate in zip(RATE_FRACTIONS, rates_MBps, strict=True):
        lat = produce_at_rate(p, topic, value, rate * MB / len(value), seconds)
        pct_ = int(fraction * 100)
        for k, v in latency_ms(lat).items():
            out[f"at_{pct_}pct_{k}"] = v
        out[f"at_{pct_}pct_MBps"] = round(rate, 1)
    return out


def single_server(server: Server, args: argparse.Namespace, kafka_max: dict[int, float]) -> dict[str, object]:
    value = os.urandom(args.record_size)
    count = int(args.mb * MB // args.record_size)
    results: dict[str, object] = {}
    if args.warmup_mb > 0:  # the JVM compiles its hot paths in the first seconds: keep that out of every figure
        create_topic(server.bootstrap, "warmup", 8, 1)
        produce_saturated(producer(server.bootstrap), "warmup", value, int(args.warmup_mb * MB // args.record_size),
                          progress=False)
    for partitions in args.partitions:
        print(f"{server.name}: {partitions} partitions", file=sys.stderr, flush=True)
        topic = f"rdk-{partitions}"
        create_topic(server.bootstrap, topic, partitions, 1)
        row: dict[str, float] = dict(librdkafka_phase(server, topic, partitions, count, value))
        if server.name == "kafka":
            kafka_max[partitions] = float(row["produce_MBps"])
        if not args.skip_perf_tools:
            perf_topic = f"perf-{partitions}"
            create_topic(server.bootstrap, perf_topic, partitions, 1)
            row.update(perf_tool_phase(server, perf_topic, count, args.record_size))
        lat_topic = f"lat-{partitions}"
        create_topic(server.bootstrap, lat_topic, partitions, 1)
        rates = [kafka_max[partitions] * f for f in RATE_FRACTIONS]
        row.update(latency_phase(server, lat_topic, value, rates, args.latency_seconds))
        results[str(partitions)] = row
    results["peak_rss_MB"] = round(server.peak_rss() / 2**20, 1)
    return results


# --- replicated ---------------------------------------------------------------------


def socket_bytes_between(server: Server) -> dict[tuple[str, str], int]:
    """bytes_sent + bytes_received of each TCP socket a server process holds to another server's port."""
    listing = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                             check=False).stdout
    pids = set(server.pids)
    out: dict[tuple[str, str], int] = {}
    lines = listing.splitlines()
    for i, line in enumerate(lines):
        if line[:1].isspace() or i + 1 >= len(lines):
            continue
        fields = line.split()
        owner = re.search(r"pid=(\d+)", line)
        if owner is None or int(owner.group(1)) not in pids or len(fields) < 4:
            continue
        local, peer = fields[2], fields[3]
        local_port, peer_port = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
        if peer_port not in server.listen_ports or local_port in server.listen_ports:
            continue  # only the client side of a server-to-server connection: each counted once
        if _port_owner(server, peer_port) == int(owner.group(1)):
            continue  # a node talking to its own controller port stays inside one process
        info = lines[i + 1]
        sent = re.search(r"bytes_sent:(\d+)", info)
        received = re.search(r"bytes_received:(\d+)", info)
        out[(local, peer)] = (int(sent.group(1)) if sent else 0) + (int(received.group(1)) if received else 0)
    return out


def _port_owner(server: Server, port: int) -> int | None:
    kafka = getattr(server, "kafka", None)
    if kafka is not None:
        for n in kafka.nodes:
            if port in (n.port, n.controller_port):
                return int(n.pid)
    for b in getattr(server, "floe", []):
        if port in (b.kafka_port, b.http_port) and b.proc is not None:
            return int(b.proc.pid)
    return None


def stored_bytes(server: Server) -> float:
    kafka = getattr(server, "kafka", None)
    if kafka is not None:
        return float(sum(f.stat().st_size for n in kafka.nodes for f in n.log_dir.glob("repl-*/*.log")))
    brokers: list[BrokerProcess] = getattr(server, "floe", [])
    return float(sum(metric_sum(b.metrics_text(), "floe_objectstore_written_bytes_total") for b in brokers))


def replicated(server: Server, args: argparse.Namespace) -> dict[str, float]:
    print(f"{server.name}: 3 servers, replicated", file=sys.stderr, flush=True)
    value = os.urandom(args.record_size)
    count = int(args.replicated_mb * MB // args.record_size)
    topic = "repl-8"
    create_topic(server.bootstrap, topic, 8, 3 if server.name == "kafka" else 1)
    stored0, io0, net0 = stored_bytes(server), server.write_bytes(), socket_bytes_between(server)
    latencies, seconds = produce_saturated(producer(server.bootstrap), topic, value, count)
    produced = len(latencies) * len(value)
    # acks=all: Kafka acknowledged each batch once every in-sync follower had fetched it
    stored1, io1, net1 = stored_bytes(server), server.write_bytes(), socket_bytes_between(server)
    between = sum(v - net0.get(k, 0) for k, v in net1.items())
    return {
        "produce_MBps": round(produced / MB / seconds, 1),
        "stored_bytes_per_byte": round((stored1 - stored0) / produced, 2) if produced else float("nan"),
        "block_write_bytes_per_byte": round((io1 - io0) / produced, 2) if produced else float("nan"),
        "between_servers_bytes_per_byte": round(between / produced, 2) if produced else float("nan"),
    }


# --- report ---------------------------------------------------------------------------


def ratio(floe: object, kafka: object) -> str:
    if isinstance(floe, int | float) and isinstance(kafka, int | float) and kafka:
        return f"{floe / kafka:.2f}"
    return "-"


def table(title: str, kafka: dict[str, object], floe: dict[str, object]) -> str:
    keys = [k for k in kafka if not isinstance(kafka[k], dict)]
    width = max([len(k) for k in keys] + [6])
    lines = [title, f"  {'figure':<{width}}  {'kafka':>10}  {'floe':>10}  {'floe/kafka':>10}"]
    for k in keys:
        lines.append(f"  {k:<{width}}  {kafka[k]!s:>10}  {floe.get(k, '-')!s:>10}  {ratio(floe.get(k), kafka[k]):>10}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, object]:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="floe-vs-kafka-"))
    base.mkdir(parents=True, exist_ok=True)
    kafka_jars()  # resolve (or find cached) before any timing starts
    kafka_max: dict[int, float] = {}
    result: dict[str, object] = {"kafka_version": KAFKA_VERSION, "record_bytes": args.record_size,
                                 "mb": args.mb, "machine": machine(), "quick": args.quick}
    try:
        for name, start in (("kafka", lambda: start_kafka(base, 1, args.kafka_heap)),
                            ("floe", lambda: start_floe(base, 1, args.flush_ms))):
            server = start()
            try:
                result[f"single_{name}"] = single_server(server, args, kafka_max)
            finally:
                server.stop()
        if not args.skip_replicated:
            for name, start in (("kafka", lambda: start_kafka(base, 3, args.kafka_heap)),
                                ("floe", lambda: start_floe(base, 3, args.flush_ms))):
                server = start()
                try:
                    result[f"replicated_{name}"] = replicated(server, args)
                finally:
                    server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=1000, help="MB produced per partition count and per tool")
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--partitions", type=lambda s: [int(x) for x in s.split(",")], default=[8, 1000])
    ap.add_argument("--latency-seconds", type=float, default=15.0, help="seconds at each fixed rate")
    ap.add_argument("--replicated-mb", type=float, default=500)
    ap.add_argument("--warmup-mb", type=float, default=200,
                    help="MB produced to each single server before it is measured")
    ap.add_argument("--flush-ms", type=int, default=10, help="Floe's WAL flush interval")
    ap.add_argument("--kafka-heap", default="1g")
    ap.add_argument("--skip-perf-tools", action="store_true")
    ap.add_argument("--skip-replicated", action="store_true")
    ap.add_argument("--dir", help="where both servers keep their data (default: a new temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep --dir after the run")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 20 MB, 2 s per rate, 20 MB replicated, 10 MB warm-up")
    args = ap.parse_args()
    if args.quick:
        args.mb, args.latency_seconds, args.replicated_mb, args.warmup_mb = 20, 2.0, 20, 10
    result = run(args)
    kafka_single, floe_single = result["single_kafka"], result["single_floe"]
    assert isinstance(kafka_single, dict) and isinstance(floe_single, dict)
    for partitions in args.partitions:
        print(table(f"single server, {partitions} partitions", kafka_single[str(partitions)],
                    floe_single[str(partitions)]))
    print(table("single server", kafka_single, floe_single))
    if "replicated_kafka" in result:
        print(table("3 servers (Kafka: replication factor 3; Floe: one copy in the store)",
                    result["replicated_kafka"], result["replicated_floe"]))  # type: ignore[arg-type]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
