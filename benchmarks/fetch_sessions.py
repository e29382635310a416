"""Fetch sessions (KIP-227) on and off: bytes and broker CPU per fetch with 1,000 partitions.

    .venv/bin/python benchmarks/fetch_sessions.py --partitions 1000 --seconds 20

For each mode, on a fresh ``file://`` store: one broker (sessions on, or off
with ``--max-incremental-fetch-session-cache-slots 0``), a topic of
``--partitions`` partitions, a kafka-python consumer assigned all of them
(it uses sessions when the broker grants one) talking through a recording
proxy, and a light producer writing ``--rate`` records a second to a few
partitions. After the consumer caught up, for ``--seconds`` it reports

* fetches, and the mean request and response bytes of a fetch (from the proxy);
* broker CPU (user + system, from /proc) per fetch, in microseconds.

librdkafka does not implement fetch sessions, so the consumer is
kafka-python. One JSON line per mode on stdout; nothing is asserted. On a
loaded machine the CPU figures are indicative.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker"), str(ROOT / "api")]

from benchmarks.common import create_topic  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from kafka import TopicPartition as KafkaTopicPartition  # noqa: E402

from tests.fetch_sessions.recording_proxy import RecordingProxy  # noqa: E402
from tests.infra.broker import BrokerProcess, free_port  # noqa: E402

FLAGS = ["--fsync", "false", "--per-partition-metrics", "false", "--auto-create-topics", "false",
         "--offsets-topic-partitions", "1"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(sessions: bool, partitions: int, seconds: float, rate: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="floe-fs-"))
    port = free_port()
    with RecordingProxy(port) as proxy:
        extra = [*FLAGS, "--advertise", f"127.0.0.1:{proxy.port}"]
        if not sessions:
            extra += ["--max-incremental-fetch-session-cache-slots", "0"]
        broker = BrokerProcess(storage=f"file://{tmp / 'bucket'}", cluster="fs", log_path=tmp / "broker.log",
                               env={}, extra=extra, kafka_port=port).start(timeout=120)
        stop = threading.Event()
        try:
            topic = "fetch-sessions"
            create_topic(broker.bootstrap, topic, partitions)

            def produce() -> None:
                p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
                i = 0
                while not stop.is_set():
                    p.produce(topic, b"x" * 100, partition=i % 10)
                    p.poll(0)
                    i += 1
                    stop.wait(1 / rate)
                p.flush(30)

            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{proxy.port}", enable_auto_commit=False,
                                     fetch_max_wait_ms=100, api_version=(2, 0, 0))
            consumer.assign([KafkaTopicPartition(topic, i) for i in range(partitions)])
            consumer.seek_to_beginning()
            warm = time.monotonic() + 5
            while time.monotonic() < warm:
                consumer.poll(timeout_ms=200)
            assert broker.proc is not None
            before, cpu0 = len(proxy.snapshot()), cpu_seconds(broker.proc.pid)
            records = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                records += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
            cpu1 = cpu_seconds(broker.proc.pid)
            fetches = proxy.snapshot()[before:]
            consumer.close()
        finally:
            stop.set()
            broker.stop()
    n = max(1, len(fetches))
    return {
        "sessions": sessions, "partitions": partitions, "seconds": seconds, "records": records,
        "fetches": len(fetches),
        "incremental_fetches": sum(1 for f in fetches if f.session_id != 0 and f.session_epoch > 0),
        "request_bytes_mean": round(sum(f.request_bytes for f in fetches) / n),
        "response_bytes_mean": round(sum(f.response_bytes for f in fetches) / n),
        "broker_cpu_us_per_fetch": round((cpu1 - cpu0) / n * 1e6),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=int, default=20, help="records a second from the light producer")
    args = ap.parse_args()
    for sessions in (True, False):
        print(json.dumps(run(sessions, args.partitions, args.seconds, args.rate)), flush=True)


if __name__ == "__main__":
    main()
