"""Write limits a producer meets: a full WAL buffer while the store stalls, a full disk under ``file://``.

In both, what the user must see is the same: the broker stays up, producers
get a clear, retriable error instead of a silent wait, nothing acknowledged
is lost, and once the store takes writes again everything proceeds by itself.
"""

from __future__ import annotations

import errno
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

from tests.conftest import StoreSpec, s3_spec
from tests.infra.broker import wait_until
from tests.test_clients import consume_exactly, create_topic
from tests.test_store_faults import readiness

VALUE = b"x" * 1000
PENDING_BOUND = 256 * 1024  # a few hundred records fill the WAL buffer


class Ledger:
    """A librdkafka producer on one partition, remembering every acknowledgement.

    Not idempotent: an idempotent producer holds back at five requests in flight, so one
    alone never fills the broker's buffer; many clients do, and so does one that pipelines.
    """

    def __init__(self, bootstrap: str, topic: str, **conf: object) -> None:
        self.topic = topic
        self.acked: list[tuple[int, bytes, float]] = []
        self.fatal: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                     "request.timeout.ms": 4000, "message.timeout.ms": 300000, **conf}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        p = Producer(self.conf)

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            with self.lock:
                if err is None:
                    self.acked.append((msg.offset(), msg.value(), time.monotonic()))
                else:
                    self.fatal.append(str(err))  # retriable errors are retried inside the client

        i = 0
        while not self.stop.is_set():
            try:
                p.produce(self.topic, value=b"%d:" % i + VALUE, partition=0, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            except KafkaException as exc:
                with self.lock:
                    self.fatal.append(f"produce() at {time.monotonic():.1f}: {exc}")
                time.sleep(0.5)
            p.poll(0.002)
        p.flush(300)

    def since(self, t: float) -> int:
        with self.lock:
            return sum(1 for a in self.acked if a[2] > t)

    def finish(self) -> dict[int, bytes]:
        self.stop.set()
        self.thread.join(320)
        assert not self.thread.is_alive(), "the producer did not get every record acknowledged after recovery"
        assert not self.fatal, f"records failed for good: {self.fatal[:3]}"
        with self.lock:
            return {o: v for o, v, _ in self.acked}


def assert_nothing_lost(bootstrap: str, topic: str, ledger: dict[int, bytes], *, in_order: bool = False) -> None:
    """Every acknowledged record is at its offset; with ``in_order``, the log holds each record once,
    in the order the producer sent them (what an idempotent producer is promised)."""
    top = max(ledger)
    got = consume_exactly(bootstrap, topic, 0, 0, top + 1, timeout=120)
    by_offset = {m.offset(): m.value() for m in got}
    missing = [o for o, v in ledger.items() if by_offset.get(o) != v]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    if in_order:
        sent = [int(by_offset[o].split(b":", 1)[0]) for o in sorted(by_offset)]
        assert sent == sorted(set(sent)), "the log holds records out of the order they were sent, or twice"


def refusal_seen_by_a_client(bootstrap: str, topic: str, bound: int = PENDING_BOUND) -> Callable[[], str | None]:
    """A kafka-python producer that does not retry: what error does one produce get now?

    Its record is larger than the whole buffer, so it cannot slip into what room is left.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, request_timeout_ms=10000,
                             max_block_ms=10000)

    def attempt() -> str | None:
        t0 = time.monotonic()
        try:
            producer.send(topic, value=b"p" * (bound + 1024), partition=0).get(30)
        except KafkaError as exc:
            return f"{type(exc).__name__}: {exc} after {time.monotonic() - t0:.1f}"
        return None

    attempt.close = producer.close  # type: ignore[attr-defined]
    return attempt


def metric(broker, name: str) -> float:  # type: ignore[no-untyped-def]
    found = re.search(rf"^{name} ([0-9.e+]+)$", broker.metrics_text(), re.M)
    return float(found.group(1)) if found else 0.0


def test_full_write_buffer_refuses_produce_with_a_retriable_error_and_loses_nothing(brokers, moto_s3) -> None:  # type: ignore[no-untyped-def]
    """WAL PUTs stall; once --max-pending-bytes are waiting, produce is refused (NOT_ENOUGH_REPLICAS,
    a message naming the full buffer) after half its timeout instead of waiting in silence; librdkafka
    retries through it, and after the store is back every record is acknowledged and readable."""
    from tests.infra.s3_fault_proxy import S3FaultProxy

    with S3FaultProxy(moto_s3.endpoint) as proxy:
        spec = s3_spec(moto_s3, f"full-{uuid.uuid4().hex[:6]}", endpoint=proxy.endpoint)
        broker = brokers(spec, "--max-pending-bytes", str(PENDING_BOUND))
        topic = f"full-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic)
        ledger = Ledger(broker.bootstrap, topic)
        ordered_topic = f"ordered-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, ordered_topic)
        # Refused with later requests already in flight behind it, an idempotent producer must still
        # end up with each record once and in order: nothing pipelined may overtake a refusal.
        ordered = Ledger(broker.bootstrap, ordered_topic, **{"enable.idempotence": True})
        wait_until(lambda: ledger.since(0) > 200 and ordered.since(0) > 50, 60, message="acks before the stall")

        proxy.hang(ops="put")
        stalled = time.monotonic()
        wait_until(lambda: metric(broker, "floe_produce_buffer_full_total") > 0, 60,
                   message="a produce refused for a full write buffer")
        probe = refusal_seen_by_a_client(broker.bootstrap, topic)
        try:
            seen = probe()
        finally:
            probe.close()  # type: ignore[attr-defined]
        assert seen is not None and seen.startswith("NotEnoughReplicasError"), seen
        assert "produce refused: write buffer full" in broker.log_text()
        assert ledger.since(stalled + 1.0) == 0, "records acknowledged while no WAL PUT could finish"
        assert broker.proc is not None and broker.proc.poll() is None, "the broker exited"

        proxy.heal()
        healed = time.monotonic()
        wait_until(lambda: ledger.since(healed) > 200 and ordered.since(healed) > 50, 120,
                   message="acks after the store came back")
        assert_nothing_lost(broker.bootstrap, topic, ledger.finish())
        assert_nothing_lost(broker.bootstrap, ordered_topic, ordered.finish(), in_order=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, so a test can fill a real filesystem; unmounted at teardown."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no space left."""
    block = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    while True:  # the last partial block: fill the remaining pages too
        try:
            with path.open("ab", buffering=0) as f:
                f.write(b"\0" * 4096)
        except OSError:
            return


def test_full_disk_under_the_file_store_refuses_produce_clearly_and_recovers_once_space_is_freed(
        small_disk, brokers) -> None:  # type: ignore[no-untyped-def]
    """The ``file://`` store's filesystem fills up: the broker stays up, says so in its log, /readyz
    and floe_objectstore_state; produce is refused with a message naming the full disk; once space
    is freed it proceeds by itself and every acknowledged record is at its offset."""
    bound = PENDING_BOUND
    broker = brokers(StoreSpec(kind="file", url=f"file://{small_disk / 'bucket'}"), "--max-pending-bytes", str(bound))
    topic = f"disk-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic)
    ledger = Ledger(broker.bootstrap, topic)
    wait_until(lambda: ledger.since(0) > 200, 60, message="acks before the disk fills")

    probe = refusal_seen_by_a_client(broker.bootstrap, topic, bound)  # connected while the disk has room
    filler = small_disk / "filler"
    fill(filler)
    full = time.monotonic()
    wait_until(lambda: readiness(broker) == (503, {"status": "store-unavailable", "node": 1, "store": "unavailable"}),
               30, message="/readyz says the store is unavailable")
    assert 'floe_objectstore_state{state="unavailable"} 1.0' in broker.metrics_text()
    wait_until(lambda: "No space left on device" in broker.log_text(), 30, message="the log names the full disk")
    wait_until(lambda: metric(broker, "floe_produce_buffer_full_total") > 0, 60,
               message="a produce refused for a full write buffer")
    try:
        seen = probe()
    finally:
        probe.close()  # type: ignore[attr-defined]
    assert seen is not None and seen.startswith("NotEnoughReplicasError"), seen
    assert "No space left on device" in seen, seen
    assert ledger.since(full + 2.0) == 0, "records acknowledged while the disk was full"
    assert broker.proc is not None and broker.proc.poll() is None, "the broker exited"

    filler.unlink()
    freed = time.monotonic()
    wait_until(lambda: ledger.since(freed) > 200, 120, message="acks after space was freed")
    wait_until(lambda: readiness(broker)[0] == 200, 30, message="/readyz ready again")
    assert_nothing_lost(broker.bootstrap, topic, ledger.finish())
