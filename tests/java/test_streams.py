"""Kafka Streams word count under exactly_once_v2 on a 3-broker Floe cluster, through a hard kill.

``dev.floe.platform.WordCount`` (``groupBy`` + ``count``: a repartition topic and a changelog)
counts the words of a known multiset of lines that a plain producer writes while it runs. Either
the Streams JVM is destroyed with SIGKILL mid-stream and started again on the same application
id, or a Floe broker leading some of its partitions is killed -9 while it runs. Read with
read_committed, the output must end with exactly each word's count, and never a larger value:
nothing counted twice (an aborted transaction's output is never read), nothing lost (the restart
resumes from the offsets committed in its last transaction and restores the counts from the
changelog).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import BrokerProcess, wait_until
from tests.java.streams_app import EXPECTED, LINES, CountsReader, InputProducer, WordCountApp
from tests.java.test_producer_faults import leaders
from tests.test_clients import create_topic

PARTITIONS = 4


def three_brokers(brokers: BrokerFactory, store: StoreSpec) -> list[BrokerProcess]:
    procs = [brokers(store) for _ in range(3)]
    wait_until(lambda: len(procs[0].get("/v1/cluster")[1].get("brokers", [])) == 3, 30, message="3 brokers")
    return procs


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {name: entry.value for name, entry in entries.items()}


def overshoot(reader: CountsReader) -> dict[str, tuple[int, int]]:
    """Words whose count was ever read above the right one: (largest read, right count)."""
    return {w: (n, EXPECTED[w]) for w, n in reader.most.items() if n > EXPECTED[w]}


@pytest.mark.timeout(420)  # two JVM starts and a failover on a loaded shared machine
@pytest.mark.parametrize("fault", ["streams-jvm-sigkill", "broker-kill9"])
def test_word_count_exactly_once(platform_tier: Path, brokers: BrokerFactory, file_store: StoreSpec,
                                 tmp_path: Path, fault: str) -> None:
    procs = three_brokers(brokers, file_store)
    bootstrap = ",".join(b.bootstrap for b in procs)
    tag = uuid.uuid4().hex[:6]
    source, sink, app_id = f"lines-{tag}", f"counts-{tag}", f"wordcount-{tag}"
    create_topic(procs[0].bootstrap, source, PARTITIONS)
    create_topic(procs[0].bootstrap, sink, PARTITIONS)
    producer = InputProducer(bootstrap, source)
    reader = CountsReader(procs[0].bootstrap, sink, PARTITIONS)
    apps = [WordCountApp(platform_tier, bootstrap, source, sink, app_id, tmp_path, 1)]
    try:
        wait_until(apps[0].running, 120, interval=0.1, message="Streams RUNNING")
        producer.start()
        wait_until(lambda: apps[0].seen() >= LINES // 8, 120, interval=0.1, message="Streams counting")
        if fault == "streams-jvm-sigkill":
            apps[0].kill9()
            partial = dict(reader.poll(1.0))
            apps.append(WordCountApp(platform_tier, bootstrap, source, sink, app_id, tmp_path, 2))
        else:
            victim = procs[2]  # node 3: never the controller
            led = {t: [p for p, n in leaders(procs[0], t).items() if n == 3]
                   for t in (source, sink, f"{app_id}-words-repartition", f"{app_id}-counts-changelog")}
            assert any(led.values()), f"node 3 leads none of the Streams partitions: {led}"
            victim.kill9()
            partial = dict(reader.poll(1.0))
        assert producer.is_alive(), "the input was all produced before the fault: not mid-stream"
        assert sum(partial.values()) < sum(EXPECTED.values()), "the counts were complete before the fault"
        wait_until(lambda: reader.poll() == EXPECTED or overshoot(reader), 180, interval=0,
                   message="the exact count of every word")
        assert overshoot(reader) == {}, "counted twice"
        producer.join(120)
        assert producer.errors == [] and producer.acked == LINES, producer.errors[:5]
        verdict = apps[-1].stop()
    finally:
        for app in apps:
            app.ensure_stopped()
    assert verdict["closed"], verdict
    reader.poll(2.0)  # the close's last commit: nothing after it may change a count
    assert reader.last == EXPECTED
    assert overshoot(reader) == {}, "counted twice"
    reader.close()
    changelog = topic_config(procs[0].bootstrap, f"{app_id}-counts-changelog")
    assert changelog["cleanup.policy"] == "compact"


def test_the_streams_group_protocol_is_refused_with_kafkas_error(platform_tier: Path, brokers: BrokerFactory,
                                                                 file_store: StoreSpec, tmp_path: Path) -> None:
    """``group.protocol=streams`` (KIP-1071) needs StreamsGroupHeartbeat, which Floe does not serve: the
    application sees Kafka's own UnsupportedVersionException, and the classic protocol (the default)
    is what runs above."""
    b = brokers(file_store)
    tag = uuid.uuid4().hex[:6]
    create_topic(b.bootstrap, f"lines-{tag}", 1)
    app = WordCountApp(platform_tier, b.bootstrap, f"lines-{tag}", f"counts-{tag}", f"kip1071-{tag}", tmp_path, 1,
                       "group.protocol=streams")
    try:
        error = wait_until(app.thread_error, 90, interval=0.1, message="the stream thread's error")
    finally:
        app.ensure_stopped()
    assert "UnsupportedVersionException" in error and "does not support the STREAMS group protocol" in error
