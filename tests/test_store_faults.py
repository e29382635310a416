"""The object store fails for a while: no false acks, nothing acknowledged lost.

The broker talks to moto S3 through a fault-injecting proxy. While the proxy
answers 503 (or hangs), producers must not be acknowledged; once it heals,
the broker catches up by itself, and every record that *was* acknowledged
is readable at its offset.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Producer

from tests.conftest import s3_spec
from tests.infra.broker import wait_until
from tests.test_clients import consume_exactly, create_topic


@pytest.mark.parametrize("mode", ["503", "hang"])
def test_outage_gives_no_false_acks_and_loses_nothing(brokers, moto_s3, mode: str) -> None:  # type: ignore[no-untyped-def]
    from tests.infra.s3_fault_proxy import S3FaultProxy

    with S3FaultProxy(moto_s3.endpoint) as proxy:
        spec = s3_spec(moto_s3, f"fault-{uuid.uuid4().hex[:6]}", endpoint=proxy.endpoint)
        broker = brokers(spec)
        topic = f"fault-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic)

        acked: list[tuple[int, bytes, float]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def produce() -> None:
            p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                          "message.timeout.ms": 60000})

            def on_delivery(err, msg):  # type: ignore[no-untyped-def]
                if err is None:
                    with lock:
                        acked.append((msg.offset(), msg.value(), time.monotonic()))

            i = 0
            while not stop.is_set():
                try:
                    p.produce(topic, value=f"v{i}".encode(), partition=0, on_delivery=on_delivery)
                    i += 1
                except BufferError:
                    pass
                p.poll(0.005)
                time.sleep(0.002)
            p.flush(60)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        wait_until(lambda: len(acked) > 200, 30, message="acks before the outage")

        if mode == "503":
            proxy.fail(status=503)
        else:
            proxy.hang()
        outage_start = time.monotonic()
        time.sleep(0.5)  # let requests that were already durable finish answering
        with lock:
            before = len(acked)
        time.sleep(3.0)  # the outage itself: a duration, not a synchronisation
        with lock:
            during = [a for a in acked[before:] if a[2] > outage_start + 0.5]
        assert not during, f"{len(during)} records acknowledged while the store was down"

        proxy.heal()
        wait_until(lambda: len(acked) > before + 200, 60, message="acks after the store healed")
        stop.set()
        t.join(90)

        with lock:
            ledger = {o: v for o, v, _ in acked}
        top = max(ledger)
        got = consume_exactly(broker.bootstrap, topic, 0, 0, top + 1, timeout=60)
        by_offset = {m.offset(): m.value() for m in got}
        missing = [o for o, v in ledger.items() if by_offset.get(o) != v]
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
        assert "wal put failed, retrying" in broker.log_text()


class AckLedger:
    """A producer thread on one partition, remembering every acknowledgement with its time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.acked: list[tuple[int, bytes, float]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 120000})

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            with self.lock:
                if err is None:
                    self.acked.append((msg.offset(), msg.value(), time.monotonic()))
                elif not err.retriable():
                    self.errors.append(str(err))

        i = 0
        while not self.stop.is_set():
            try:
                p.produce(self.topic, value=f"v{i}".encode(), partition=0, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.005)
            time.sleep(0.002)
        p.flush(120)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def since(self, t: float) -> int:
        with self.lock:
            return sum(1 for a in self.acked if a[2] > t)


def readiness(broker) -> tuple[int, dict]:  # type: ignore[no-untyped-def, type-arg]
    """``/readyz`` status and body, the body of a 503 included."""
    try:
        with urllib.request.urlopen(f"http://{broker.http}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_brownouts_slow_down_but_never_crash_never_false_ack_and_recover(brokers, moto_s3) -> None:  # type: ignore[no-untyped-def]
    """503 SlowDown on every other request, slow requests, resets mid-answer, then a full outage.

    Through each brownout the broker keeps acknowledging (retries with backoff absorb
    it) and ``/readyz`` says the store is degraded; during the outage nothing is
    acknowledged and ``/readyz`` answers 503 store-unavailable; afterwards it recovers
    by itself, and every acknowledged record is at its offset.
    """
    from tests.infra.s3_fault_proxy import S3FaultProxy

    with S3FaultProxy(moto_s3.endpoint) as proxy:
        spec = s3_spec(moto_s3, f"brown-{uuid.uuid4().hex[:6]}", endpoint=proxy.endpoint)
        broker = brokers(spec)
        topic = f"brown-{uuid.uuid4().hex[:6]}"
        create_topic(broker.bootstrap, topic)
        ledger = AckLedger(broker.bootstrap, topic)
        ledger.thread.start()
        wait_until(lambda: ledger.count() > 100, 30, message="acks before the brownouts")

        brownouts = {
            "503 SlowDown on every other request": lambda: proxy.fail(status=503, code="SlowDown", every=2),
            "every PUT takes 1.5 s": lambda: proxy.delay(1.5, ops="put"),
            "every other answer reset mid-body": lambda: proxy.reset(every=2),
        }
        for name, start in brownouts.items():
            start()
            t0 = time.monotonic()
            wait_until(lambda t0=t0: ledger.since(t0) > 20, 30, message=f"acks during '{name}'")  # type: ignore[misc]
            if name != "every PUT takes 1.5 s":  # a slow store is not a failing one
                wait_until(lambda: readiness(broker)[1].get("store") == "degraded", 10,
                           message=f"/readyz says the store is degraded during '{name}'")
            assert readiness(broker)[0] == 200, f"not ready during '{name}'"
            proxy.heal()

        proxy.fail(status=503)
        outage = time.monotonic()
        wait_until(lambda: readiness(broker) == (503, {"status": "store-unavailable", "node": 1,
                                                        "store": "unavailable"}),
                   10, message="/readyz says the store is unavailable")
        assert 'floe_objectstore_state{state="unavailable"} 1.0' in broker.metrics_text()
        settled = time.monotonic()
        time.sleep(3.0)  # the outage itself: a duration, not a synchronisation
        assert ledger.since(max(outage + 0.5, settled)) == 0, "records acknowledged while every request failed"
        proxy.heal()
        healed = time.monotonic()
        wait_until(lambda: ledger.since(healed) > 50, 60, message="acks after the store healed")
        wait_until(lambda: readiness(broker)[0] == 200, 10, message="/readyz ready again")
        ledger.stop.set()
        ledger.thread.join(150)

        assert broker.proc is not None and broker.proc.poll() is None, "the broker exited"
        assert not ledger.errors, ledger.errors[:5]
        with ledger.lock:
            by_offset_acked = {o: v for o, v, _ in ledger.acked}
        top = max(by_offset_acked)
        got = consume_exactly(broker.bootstrap, topic, 0, 0, top + 1, timeout=60)
        by_offset = {m.offset(): m.value() for m in got}
        missing = [o for o, v in by_offset_acked.items() if by_offset.get(o) != v]
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
