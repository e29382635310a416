"""KIP-848 with the Java 4.4 client (``group.protocol=consumer``) next to librdkafka in one group.

A tiny driver (``java/Member848.java``) is compiled against the cached Kafka
jars; it prints its assignment on every change and each record it reads, and
leaves the group when its stdin closes.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from tests.groups848.conftest import FAST_848
from tests.groups848.test_librdkafka import PARTITIONS, Members, consumer, name
from tests.infra.apache_kafka import KafkaUnavailable, java_command, kafka_jars
from tests.infra.broker import wait_until
from tests.test_clients import create_topic, produce_all

SOURCE = Path(__file__).parent / "java" / "Member848.java"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("javac") is None:
        pytest.skip("javac is not installed")
    try:
        jars = kafka_jars()
    except KafkaUnavailable as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("member848")
    subprocess.run(["javac", "-cp", f"{jars}/*", "-d", str(out), str(SOURCE)], check=True, timeout=300)
    return jars, out


class JavaMember:
    def __init__(self, driver: tuple[Path, Path], bootstrap: str, group: str, topic: str, assignor: str) -> None:
        jars, classes = driver
        cmd = java_command(jars, "Member848", bootstrap, group, topic, assignor, heap="256m")
        cp = cmd.index("-cp") + 1
        cmd[cp] = f"{classes}:{cmd[cp]}"
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.owned_tp: set[tuple[str, int]] = set()
        self.records_tp: set[tuple[str, int, int]] = set()
        self.lines: list[str] = []
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            word, _, rest = line.strip().partition(" ")
            if word == "ASSIGNED":
                self.owned_tp = {(tp.rsplit(":", 1)[0], int(tp.rsplit(":", 1)[1])) for tp in rest.split(",") if tp}
            elif word == "RECORD":
                t, p, o = rest.split()
                self.records_tp.add((t, int(p), int(o)))
            elif word == "CLOSED":
                self.closed = True

    @property
    def owned(self) -> set[int]:
        return {p for _, p in self.owned_tp}

    @property
    def records(self) -> set[tuple[int, int]]:
        return {(p, o) for _, p, o in self.records_tp}

    def leave(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        wait_until(lambda: self.closed, 60, message=f"the Java member left (output: {self.lines[-5:]})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_java_and_librdkafka_members_share_a_group(brokers, file_store, driver, assignor) -> None:  # type: ignore[no-untyped-def]
    b = brokers(file_store, *FAST_848)
    topic, group = name("tj848"), name("gj848")
    create_topic(b.bootstrap, topic, PARTITIONS)
    produce_all(b.bootstrap, [(topic, p, None, b"v", None, None) for _ in range(3) for p in range(PARTITIONS)])
    g = Members()
    java = JavaMember(driver, b.bootstrap, group, topic, assignor)
    try:
        g.add("c", consumer(b.bootstrap, group, "c", **{"group.remote.assignor": assignor}), [topic])

        def split() -> bool:
            g.pump(0.1)
            mine = {p for _, p in g.owned()["c"]}
            assert not mine & java.owned, f"owned twice: {sorted(mine & java.owned)}"
            return len(mine) == 6 and len(java.owned) == 6

        wait_until(split, 90, message=f"six partitions each (java output: {java.lines[-5:]})")
        if assignor == "range":  # contiguous ranges, as Kafka's RangeAssignor hands out
            for parts in ({p for _, p in g.owned()["c"]}, java.owned):
                assert max(parts) - min(parts) == 5, parts
        wait_until(lambda: (g.pump(0.1), len(g.seen) + len(java.records) >= 3 * PARTITIONS)[1], 60,
                   message="every record read by one of them")
        java.leave()
        wait_until(lambda: (g.pump(0.1), len(g.owned()["c"]) == PARTITIONS)[1], 60,
                   message="the librdkafka member owns all twelve after the Java member left")
        produce_all(b.bootstrap, [(topic, p, None, b"w", None, None) for p in range(PARTITIONS)])
        wait_until(lambda: (g.pump(0.1), len({(p, o) for _, p, o in g.seen} | java.records) == 4 * PARTITIONS)[1],
                   60, message="the new records read")
        c = g.members["c"]
        wait_until(lambda: (g.pump(0.1), [tp.offset for tp in c.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)] == [4] * PARTITIONS)[1], 60,
            message="everything committed")
    finally:
        g.close()
        java.stop()


def test_java_regex_subscription_picks_up_a_new_topic(brokers, file_store, driver) -> None:  # type: ignore[no-untyped-def]
    """The Java client's broker-side regex (SubscriptionPattern, RE2/J) resolved by Floe, new topics included."""
    b = brokers(file_store, *FAST_848)
    prefix = name("jrx")
    create_topic(b.bootstrap, f"{prefix}-one", 2)
    create_topic(b.bootstrap, f"other-{prefix}", 2)
    java = JavaMember(driver, b.bootstrap, name("gjrx"), f"regex:{prefix}-.*", "uniform")
    try:
        wait_until(lambda: java.owned_tp == {(f"{prefix}-one", 0), (f"{prefix}-one", 1)}, 90,
                   message=f"the matching topic assigned (java output: {java.lines[-5:]})")
        create_topic(b.bootstrap, f"{prefix}-two", 1)
        produce_all(b.bootstrap, [(f"{prefix}-two", 0, None, b"new", None, None)])
        wait_until(lambda: (f"{prefix}-two", 0, 0) in java.records_tp, 90,
                   message=f"a record of the new topic read (java output: {java.lines[-5:]})")
        assert all(not t.startswith("other-") for t, _ in java.owned_tp)
        java.leave()
    finally:
        java.stop()
