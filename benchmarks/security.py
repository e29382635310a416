"""What TLS and SASL cost: produce and consume MB/s and produce latency over PLAINTEXT, SSL and SASL_SSL.

    .venv/bin/python benchmarks/security.py --mb 100

One broker process (``file://`` store in a temp dir) with three listeners;
for each, confluent-kafka produces ``--mb`` of 1 KiB records (acks=all) as
fast as it can into its own 8-partition topic, timing every record from
enqueue to delivery report, then a consumer reads them all back. SASL_SSL
logs in with SCRAM-SHA-512 (a user seeded from a bootstrap file). Prints a
table and a JSON line. Nothing is asserted: the figures go into
docs/benchmarks.md with the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker"), str(ROOT / "api")]

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.infra.broker import BrokerProcess, free_port  # noqa: E402
from tests.security.certs import CertificateAuthority, server_secret  # noqa: E402

RECORD = 1024


def client_conf(listener: str, port: int, ca: Path) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": listener}
    if "SSL" in listener:
        conf["ssl.ca.location"] = str(ca)
    if "SASL" in listener:
        conf |= {"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bench", "sasl.password": "bench-secret"}
    return conf


def produce(conf: dict[str, Any], topic: str, total: int) -> tuple[float, list[float]]:
    p = Producer({**conf, "linger.ms": 5, "acks": "all", "batch.size": 1_000_000,
                  "queue.buffering.max.kbytes": 256 * 1024})
    payload = b"x" * RECORD
    latencies: list[float] = []

    def report(err: Any, msg: Any, sent: float) -> None:
        if err is None:
            latencies.append(time.perf_counter() - sent)

    t0 = time.perf_counter()
    for _ in range(total):
        sent = time.perf_counter()
        while True:
            try:
                p.produce(topic, payload, on_delivery=_reporter(report, sent))
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - t0
    return total * RECORD / elapsed / 1e6, latencies


def _reporter(report: Any, sent: float) -> Any:
    return lambda err, msg: report(err, msg, sent)


def consume(conf: dict[str, Any], topic: str, total: int) -> float:
    c = Consumer({**conf, "group.id": f"bench-{topic}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.max.bytes": 50 * 1024 * 1024})
    c.subscribe([topic])
    got = 0
    t0 = None
    deadline = time.monotonic() + 300
    while got < total and time.monotonic() < deadline:
        for m in c.consume(10_000, 1.0):
            if m.error() is None:
                if t0 is None:
                    t0 = time.perf_counter()
                got += 1
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return got * RECORD / max(elapsed, 1e-9) / 1e6


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 100 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="MB produced per listener")
    parser.add_argument("--flush-ms", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, alternating the listener order (later runs share the broker with "
                             "earlier runs' background work); figures are per-listener means")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="floe-bench-sec-"))
    ca = CertificateAuthority(tmp / "ca")
    server_secret(ca, tmp / "tls")
    (tmp / "users").write_text("bench:bench-secret\n")
    ports = {"PLAINTEXT": free_port(), "SSL": free_port(), "SASL_SSL": free_port()}
    broker = BrokerProcess(
        storage=f"file://{tmp / 'bucket'}", cluster="bench", log_path=tmp / "broker.log", env={},
        extra=["--listeners", ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
               "--ssl-dir", str(tmp / "tls"), "--sasl-enabled-mechanisms", "SCRAM-SHA-512",
               "--sasl-bootstrap-users-file", str(tmp / "users"), "--flush-interval-ms", str(args.flush_ms),
               "--fsync", "false"])
    broker.kafka_port = ports["PLAINTEXT"]
    broker.start()
    total = args.mb * 1_000_000 // RECORD
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    try:
        for round_ in range(args.rounds):
            order = list(ports) if round_ % 2 == 0 else list(reversed(ports))
            for listener in order:
                conf = client_conf(listener, ports[listener], ca.ca_path)
                topic = f"bench-{listener.lower()}-{round_}"
                admin = AdminClient(conf)
                admin.create_topics([NewTopic(topic, 8, replication_factor=1)])[topic].result(30)
                produce_mb, lat = produce(conf, topic, total)
                consume_mb = consume(conf, topic, total)
                runs[listener].append({"produce_mb_s": produce_mb, "consume_mb_s": consume_mb,
                                       "produce_p50_ms": pct(lat, 50), "produce_p99_ms": pct(lat, 99)})
                print(listener, round_, {k: round(v, 1) for k, v in runs[listener][-1].items()}, flush=True)
    finally:
        broker.stop()
    results = [{"listener": name, **{k: round(statistics.mean(r[k] for r in rs), 1) for k in rs[0]}}
               for name, rs in runs.items()]
    print("\n| listener | produce MB/s | consume MB/s | produce p50 / p99 |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['listener']} | {r['produce_mb_s']} | {r['consume_mb_s']} | "
              f"{r['produce_p50_ms']} ms / {r['produce_p99_ms']} ms |")
    print(json.dumps({"mb": args.mb, "machine": platform.machine(), "python": platform.python_version(),
                      "results": results}))


if __name__ == "__main__":
    main()
