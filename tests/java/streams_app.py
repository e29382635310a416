"""The parts of the Kafka Streams tests: the known input, the Streams JVM, and the read_committed output.

The input is a fixed multiset of words (line ``i`` holds three words picked by ``i``), produced at
a steady pace by a plain idempotent producer so the Streams application can be killed while lines
are still arriving. The output topic holds, per word, the running count Streams emits (a
``LongSerializer`` value); read with read_committed, the last value per word must be its exact
count, and no value may ever exceed it (a double count only ever overshoots).
"""

from __future__ import annotations

import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.java import tier

VOCABULARY = [f"word{i:02d}" for i in range(40)]
LINES = 6000
PACE_PER_SECOND = 400  # about 15 s of input: long enough to kill something while it flows


def line(i: int) -> str:
    return " ".join(VOCABULARY[(i * m + m) % len(VOCABULARY)] for m in (1, 7, 13))


EXPECTED: dict[str, int] = dict(Counter(word for i in range(LINES) for word in line(i).split()))


class InputProducer(threading.Thread):
    """Produces the ``LINES`` lines at ``PACE_PER_SECOND``; ``errors`` holds any delivery failure."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.errors: list[str] = []
        self.acked = 0

    def run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5, "message.timeout.ms": 120000})

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                self.acked += 1
            else:
                self.errors.append(str(err))

        started = time.monotonic()
        for i in range(LINES):
            p.produce(self.topic, key=str(i).encode(), value=line(i).encode(), on_delivery=delivered)
            if i % 100 == 99:  # pacing, not synchronisation: hold the rate at PACE_PER_SECOND
                p.poll(0)
                ahead = started + (i + 1) / PACE_PER_SECOND - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        remaining = p.flush(120)
        if remaining:
            self.errors.append(f"{remaining} lines never delivered")


class WordCountApp:
    """One Streams JVM (``dev.floe.platform.WordCount``) on ``state_dir``; killed hard or stopped by a file.

    ``settings`` (``key=value``) override the application's Streams configs.
    """

    def __init__(self, platform: Path, bootstrap: str, input_topic: str, output_topic: str, app_id: str,
                 work: Path, run: int, *settings: str) -> None:
        self.progress, self.stop_file = work / f"progress-{run}", work / f"stop-{run}"
        self.log = work / f"streams-{run}.log"
        cmd = tier.java_command(platform, tier.PLATFORM_MAIN, "wordcount", bootstrap, input_topic, output_topic,
                                app_id, str(work / "state"), str(self.progress), str(self.stop_file),
                                *settings, log_level="warn")
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)

    def seen(self) -> int:
        """Input lines this JVM has processed so far (0 before it is RUNNING)."""
        try:
            return int(self.progress.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def thread_error(self) -> str:
        """The first exception a stream thread died of ("" while none has)."""
        try:
            lines = self.progress.read_text().split("\n", 1)
        except OSError:
            return ""
        return lines[1].strip() if len(lines) > 1 else ""

    def running(self) -> bool:
        """Streams reached RUNNING: its tasks are assigned and it polls the input."""
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
        try:
            return self.progress.read_text().split()[1] == "RUNNING"
        except (OSError, IndexError):
            return False

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> dict[str, Any]:
        """Close the application (its last transaction commits) and return its verdict."""
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=120)
        return tier.verdict_of(out, self.log.read_text(errors="replace"))

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.kill9()


class CountsReader:
    """A read_committed consumer of the output topic: the last count per word, and the largest ever seen."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
                                  "isolation.level": "read_committed", "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest"})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.last: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def poll(self, seconds: float = 0.5) -> dict[str, int]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for m in self.consumer.consume(500, 0.1):
                if m.error() is not None:
                    raise AssertionError(f"reading the output: {m.error()}")
                word, count = (m.key() or b"").decode(), struct.unpack(">q", m.value() or b"")[0]
                self.last[word] = count
                self.most[word] = max(count, self.most.get(word, 0))
        return self.last

    def close(self) -> None:
        self.consumer.close()
