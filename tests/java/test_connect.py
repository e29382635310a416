"""A Kafka Connect distributed worker on Floe: a file read into a topic and written back, across a kill -9.

Kafka's own ``ConnectDistributed`` main runs in a JVM with the line-file source and sink
connectors (Kafka's FileStream connectors, which Maven Central does not serve for 4.4.0; same
configs and offsets) on its classpath. The worker creates its three internal topics itself
(config, offset and status storage, compacted) and refuses to start if Floe does not describe
them as compacted. Both connectors are created through the worker's REST API.

FileStream is at-least-once in Kafka too: a worker killed between writing records and committing
their offsets repeats them. So the test kills the worker (SIGKILL) only once the REST API reports
both connectors' offsets committed up to the end of what they moved: the source's file position
in ``offset.storage.topic`` and the sink's consumer-group offset. From there a worker that resumes
from its committed offsets repeats nothing, so the assertions are exact: after the restart the
connectors come back from ``config.storage.topic`` without being created again, report RUNNING
through ``status.storage.topic``, and the topic and the sink file each hold every source line
once, in order (a worker that ignored its source offsets would write the first half twice to the
topic; one that ignored its sink offsets would append it twice to the file).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import free_port, wait_until
from tests.java import tier
from tests.test_clients import create_topic

FIRST, SECOND = 400, 300  # lines before the kill, lines appended while the worker is down
SOURCE = "dev.floe.platform.LineFileSourceConnector"
SINK = "dev.floe.platform.LineFileSinkConnector"


class Worker:
    """``ConnectDistributed worker.properties`` in its own JVM, with its REST API on ``rest``."""

    def __init__(self, platform: Path, props: Path, log: Path, rest: str) -> None:
        import subprocess

        self.rest, self.log = rest, log
        with open(log, "a") as err:
            self.proc = subprocess.Popen(tier.java_command(platform, tier.CONNECT_MAIN, str(props),
                                                           log_level="warn"),
                                         stdout=err, stderr=err, text=True)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.rest}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
        try:
            return self.call("GET", "/connectors")[0] == 200
        except OSError:
            return False

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def worker_properties(path: Path, bootstrap: str, tag: str, rest: str) -> None:
    props = {
        "bootstrap.servers": bootstrap,
        "group.id": f"connect-{tag}",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "config.storage.topic": f"connect-configs-{tag}",
        "offset.storage.topic": f"connect-offsets-{tag}",
        "status.storage.topic": f"connect-status-{tag}",
        # a single broker: Floe keeps one copy in the bucket whatever the factor, Kafka would refuse 3
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.flush.interval.ms": "500",
        # hand a lost worker's connectors back at once, not after Connect's 5-minute grace
        "scheduled.rebalance.max.delay.ms": "0",
        # the killed worker's member leaves the worker group in seconds (Connect's default is 10 s)
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "listeners": f"http://{rest}",
        "plugin.discovery": "service_load",
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def read_topic(bootstrap: str, topic: str) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "enable.auto.commit": False})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])
        got: list[str] = []

        def drained() -> bool:
            for m in c.consume(500, 0.2):
                assert m.error() is None, m.error()
                got.append((m.value() or b"").decode())
            return len(got) >= high

        wait_until(drained, 60, interval=0, message=f"{high} records of {topic}")
        return got
    finally:
        c.close()


def committed(worker: Worker, name: str) -> list[dict[str, Any]]:
    status, body = worker.call("GET", f"/connectors/{name}/offsets")
    return list(body["offsets"]) if status == 200 else []


@pytest.mark.timeout(420)  # two worker starts and a rebalance on a loaded shared machine
def test_file_source_and_sink_resume_from_committed_offsets(platform_tier: Path, brokers: BrokerFactory,
                                                           file_store: StoreSpec, tmp_path: Path) -> None:
    broker = brokers(file_store)
    tag = uuid.uuid4().hex[:6]
    topic = f"lines-{tag}"
    create_topic(broker.bootstrap, topic, 1)
    source, sink = tmp_path / "source.txt", tmp_path / "sink.txt"
    source.write_text("".join(f"line {i}\n" for i in range(FIRST)))
    rest = f"127.0.0.1:{free_port()}"
    props, log = tmp_path / "worker.properties", tmp_path / "worker.log"
    worker_properties(props, broker.bootstrap, tag, rest)

    worker = Worker(platform_tier, props, log, rest)
    try:
        wait_until(worker.up, 120, interval=0.2, message="the worker's REST API")
        for name, config in (("src", {"connector.class": SOURCE, "file": str(source), "topic": topic}),
                             ("sink", {"connector.class": SINK, "file": str(sink), "topics": topic})):
            status, body = worker.call("POST", "/connectors",
                                       {"name": name, "config": {"tasks.max": "1", **config}})
            assert status == 201, body
        wait_until(lambda: len(lines(sink)) >= FIRST, 120, interval=0.2, message="the first half in the sink")
        source_done = [{"partition": {"filename": str(source)}, "offset": {"position": source.stat().st_size}}]
        sink_done = [{"partition": {"kafka_topic": topic, "kafka_partition": 0}, "offset": {"kafka_offset": FIRST}}]
        wait_until(lambda: committed(worker, "src") == source_done, 60, interval=0.2, message="source offsets")
        wait_until(lambda: committed(worker, "sink") == sink_done, 60, interval=0.2, message="sink offsets")
        worker.kill9()

        with source.open("a") as out:
            out.write("".join(f"line {i}\n" for i in range(FIRST, FIRST + SECOND)))
        worker = Worker(platform_tier, props, log, rest)
        wait_until(worker.up, 120, interval=0.2, message="the restarted worker's REST API")
        assert sorted(worker.call("GET", "/connectors")[1]) == ["sink", "src"]

        def running(name: str) -> bool:
            status, body = worker.call("GET", f"/connectors/{name}/status")
            return status == 200 and body["connector"]["state"] == "RUNNING" and \
                [t["state"] for t in body["tasks"]] == ["RUNNING"]

        wait_until(lambda: running("src") and running("sink"), 60, interval=0.2, message="both RUNNING")
        wait_until(lambda: len(lines(sink)) >= FIRST + SECOND, 120, interval=0.2, message="the second half")
        wait_until(lambda: committed(worker, "sink")[0]["offset"]["kafka_offset"] >= FIRST + SECOND
                   if committed(worker, "sink") else False, 60, interval=0.2, message="sink offsets at the end")
    finally:
        worker.kill9()
    expected = lines(source)
    assert read_topic(broker.bootstrap, topic) == expected
    assert lines(sink) == expected

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    internal = [ConfigResource(ConfigResource.Type.TOPIC, f"connect-{kind}-{tag}")
                for kind in ("configs", "offsets", "status")]
    for resource, future in admin.describe_configs(internal).items():
        assert future.result(30)["cleanup.policy"].value == "compact", resource
