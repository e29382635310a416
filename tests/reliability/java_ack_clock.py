"""Failover as Kafka's own Java producer sees it: the harness's ack clock, driven by ``VerifiableProducer``.

``org.apache.kafka.tools.VerifiableProducer`` (kafka-tools, on the Kafka jars
``tests/infra/apache_kafka.py`` caches) is the Java client Kafka's own system
tests use: it produces increasing integers with acks=all and prints one JSON
line per acknowledgement (``producer_send_success``: topic, partition, offset,
timestamp). Keys repeat over many values, so the key hash spreads records over
every partition, as an application with keyed records does.

:class:`JavaAckClock` has the face of the harness's librdkafka ``AckClock``
(``acked_since``, ``acked``, a context manager), so ``failover_harness.measure``
times the same kill -9 with either client.

The Java client runs its callbacks on its own I/O thread, which a loaded
machine can starve: acknowledgements the victim sent just before the kill may
be reported a second after it, and gaps of half a second between a
partition's acknowledgements happen with nothing killed. So a partition
counts as served again at the first acknowledgement that ends a silence of at
least :data:`SILENCE_S` and comes at least that long after the kill, not at
the first line after it. A failover faster than that would be reported late,
never early; with a session timeout of seconds none is.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from tests.infra.apache_kafka import java_command, kafka_jars

VERIFIABLE_PRODUCER = "org.apache.kafka.tools.VerifiableProducer"
KEYS = 1200  # enough distinct keys that murmur2 reaches every partition
SILENCE_S = 1.0  # shorter than any failover (a session timeout), longer than gaps between acks under load


class JavaAckClock:
    """A Java producer writing keyed records to ``topic``, remembering each partition's latest ack time."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, throughput: int = 1000,
                 workdir: Path | None = None) -> None:
        self.topic, self.partitions = topic, partitions
        self.resumed: dict[int, list[float]] = {}  # partition -> times of acks that ended a silence
        self.acked = 0
        self.failed = 0
        self._last: dict[int, float] = {}
        self.lock = threading.Lock()
        config = (workdir or Path("/tmp")) / f"java-producer-{topic}-{id(self)}.properties"
        # Kafka's defaults otherwise: retries until delivery.timeout.ms, metadata refreshed on errors.
        config.write_text("linger.ms=5\ndelivery.timeout.ms=60000\nrequest.timeout.ms=30000\n")
        self.cmd = java_command(kafka_jars(), VERIFIABLE_PRODUCER, "--bootstrap-server", bootstrap,
                                "--topic", topic, "--acks", "-1", "--throughput", str(throughput),
                                "--repeating-keys", str(KEYS), "--command-config", str(config),
                                heap="256m", log_level="ERROR")
        self.proc: subprocess.Popen[str] | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue  # log4j lines share stdout
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("name")
            if name == "producer_send_success":
                # The tool stamps each line with the wall clock; the harness counts in monotonic time.
                at = time.monotonic() - (time.time() - event["timestamp"] / 1000)
                self._ack(int(event["partition"]), at)
            elif name == "producer_send_error":
                with self.lock:
                    self.failed += 1

    def _ack(self, partition: int, at: float) -> None:
        with self.lock:
            self.acked += 1
            previous = self._last.get(partition)
            if previous is None or at - previous >= SILENCE_S:
                self.resumed.setdefault(partition, []).append(at)
            self._last[partition] = max(at, previous or 0.0)

    def acked_since(self, t: float) -> dict[int, float]:
        """Per partition, seconds from ``t`` to the first ack that ended a silence, at least SILENCE_S after ``t``
        (any ack after ``t`` when ``t`` is 0: the start)."""
        floor = t + SILENCE_S if t > 0 else t
        with self.lock:
            out = {}
            for p, times in self.resumed.items():
                later = [at for at in times if at > floor]
                if later:
                    out[p] = later[0] - t
            return out

    def __enter__(self) -> JavaAckClock:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(10)
