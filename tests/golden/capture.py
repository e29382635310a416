"""Regenerate the golden request frames: run real Kafka clients through a recording proxy.

    .venv/bin/python tests/golden/capture.py

Starts one ``floe broker`` process on a temporary ``file://`` store that
advertises a recording TCP proxy, then lets each client (librdkafka through
confluent-kafka, kafka-python, aiokafka, kcat) produce one record to
``golden`` and consume it back in a consumer group of its own. The first
request frame of every (client, API, version) is written to ``frames/`` as
the bytes after the 4-byte size prefix, and ``frames.json`` lists them with
the client's version. Nothing the tests check depends on timing, but the
bytes differ between runs (timestamps, member ids): commit what you capture.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from tests.infra.broker import BrokerProcess, free_port  # noqa: E402

HERE = Path(__file__).resolve().parent
FRAMES = HERE / "frames"
TOPIC = "golden"
API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 8: "offset_commit", 9: "offset_fetch",
    10: "find_coordinator", 11: "join_group", 12: "heartbeat", 13: "leave_group", 14: "sync_group",
    18: "api_versions", 19: "create_topics", 22: "init_producer_id",
}


class RecordingProxy:
    """Forwards bytes both ways; keeps the first request frame per (label, api key, version)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.label = ""
        self.frames: dict[tuple[str, int, int], bytes] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        label = self.label

        async def requests() -> None:
            while True:
                head = await creader.readexactly(4)
                frame = await creader.readexactly(struct.unpack(">i", head)[0])
                api_key, version = struct.unpack_from(">hh", frame, 0)
                self.frames.setdefault((label, api_key, version), frame)
                uwriter.write(head + frame)
                await uwriter.drain()

        async def responses() -> None:
            while True:
                data = await ureader.read(65536)
                if not data:
                    return
                cwriter.write(data)
                await cwriter.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (cwriter, uwriter):
            w.close()


def run_confluent(bootstrap: str) -> str:
    import confluent_kafka
    from confluent_kafka import Consumer, Producer

    p = Producer({"bootstrap.servers": bootstrap, "client.id": "golden-librdkafka", "linger.ms": 0})
    p.produce(TOPIC, key=b"k", value=b"from librdkafka")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": "golden-librdkafka", "group.id": "golden-librdkafka",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([TOPIC])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = c.poll(1)
        if msg is not None and msg.error() is None:
            c.commit(msg, asynchronous=False)
            break
    c.close()
    return f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"


def run_kafka_python(bootstrap: str) -> str:
    import kafka
    from kafka import KafkaConsumer, KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, client_id="golden-kafka-python")
    p.send(TOPIC, key=b"k", value=b"from kafka-python").get(30)
    p.close()
    c = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, client_id="golden-kafka-python",
                      group_id="golden-kafka-python", auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=30000)
    for _ in c:
        c.commit()
        break
    c.close()
    return f"kafka-python {kafka.__version__}"


def run_aiokafka(bootstrap: str) -> str:
    import aiokafka

    async def scenario() -> None:
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="golden-aiokafka")
        await p.start()
        await p.send_and_wait(TOPIC, key=b"k", value=b"from aiokafka")
        await p.stop()
        c = aiokafka.AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, client_id="golden-aiokafka",
                                      group_id="golden-aiokafka", auto_offset_reset="earliest",
                                      enable_auto_commit=False)
        await c.start()
        await asyncio.wait_for(c.getone(), 60)
        await c.commit()
        await c.stop()

    asyncio.run(scenario())
    return f"aiokafka {aiokafka.__version__}"


def run_kcat(bootstrap: str) -> str:
    common = ["kcat", "-b", bootstrap, "-X", "client.id=golden-kcat", "-t", TOPIC]
    subprocess.run([*common, "-P", "-k", "k"], input=b"from kcat", check=True, timeout=60)
    subprocess.run([*common, "-C", "-o", "beginning", "-c", "1", "-e"], check=True, timeout=60,
                   stdout=subprocess.DEVNULL)
    about = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=10).stdout
    line = next((x for x in about.splitlines() if x.startswith("Version ")), "Version ?")
    return "kcat " + line.split()[1] + " (" + line[line.find("librdkafka"):].split(" builtin")[0] + ")"


CLIENTS = {"librdkafka": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka,
           "kcat": run_kcat}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="floe-golden-"))
    broker = BrokerProcess(storage=f"file://{tmp / 'bucket'}", cluster="golden", log_path=tmp / "broker.log",
                           env={})
    proxy = RecordingProxy(broker.kafka_port)
    broker.extra = ["--advertise", f"127.0.0.1:{proxy.port}", "--fsync", "false",
                    "--group-initial-rebalance-delay-ms", "0", "--offsets-topic-partitions", "2"]
    versions: dict[str, str] = {}
    try:
        with proxy:
            broker.start()
            for label, run in CLIENTS.items():
                proxy.label = label
                versions[label] = run(f"127.0.0.1:{proxy.port}")
                time.sleep(0.5)  # let the client's last requests (leave group) pass the proxy
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if FRAMES.exists():
        shutil.rmtree(FRAMES)
    FRAMES.mkdir()
    manifest = []
    for (label, api_key, version), frame in sorted(proxy.frames.items()):
        name = f"{label}-{API_NAMES.get(api_key, f'api{api_key}')}-v{version}.bin"
        (FRAMES / name).write_bytes(frame)
        manifest.append({"file": name, "client": label, "client_version": versions[label],
                         "api_key": api_key, "api_version": version})
    (HERE / "frames.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest)} frames to {FRAMES}")


if __name__ == "__main__":
    main()
