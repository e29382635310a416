"""WAL flush profiles: which defaults a store gets, and what a user sees of them.

The resolution (store × ``--flush-profile`` × an explicit flush flag) is a
pure function of the configuration and is tested as one. The behaviour is
tested on real brokers with confluent-kafka: on moto S3 the ``cost`` default
keeps the WAL PUT rate bounded by the interval at a low produce rate while
every produce is still acknowledged within the interval plus a bound, and at
a high rate flushes are cut by size, one PUT per ``--flush-bytes``.
"""

from __future__ import annotations

import argparse
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from prometheus_client.parser import text_string_to_metric_families

from floe_broker import config
from floe_broker.config import BrokerConfig
from tests.conftest import s3_spec
from tests.infra.broker import BrokerProcess
from tests.test_clients import consume_exactly, create_topic

MIB = 1024 * 1024


# ---- resolution -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "profile", "interval", "inflight", "requests"),
    [
        ("s3://bucket/prefix", "cost", 250, 8, 1024),
        ("S3://bucket", "cost", 250, 8, 1024),
        ("file:///tmp/bucket", "latency", 10, 4, 64),
        ("memory://", "latency", 10, 4, 64),
    ],
)
def test_the_store_picks_the_profile_unless_one_is_named(storage: str, profile: str, interval: int,
                                                         inflight: int, requests: int) -> None:
    cfg = BrokerConfig(storage=storage)
    assert cfg.flush_profile == profile
    assert cfg.flush_interval_ms == interval
    assert cfg.flush_bytes == 8 * MIB
    assert cfg.max_inflight_flushes == inflight
    assert cfg.max_inflight_requests == requests


@pytest.mark.parametrize(
    ("storage", "profile", "interval"),
    [
        ("s3://bucket", "latency", 10),
        ("file:///tmp/bucket", "cost", 250),
        ("s3://bucket", "cost", 250),
        ("file:///tmp/bucket", "latency", 10),
        ("s3://bucket", "auto", 250),
    ],
)
def test_a_named_profile_wins_over_the_store(storage: str, profile: str, interval: int) -> None:
    cfg = BrokerConfig(storage=storage, flush_profile=profile)
    assert cfg.flush_interval_ms == interval
    assert cfg.flush_profile == (profile if profile != "auto" else "cost")


def test_a_setting_given_one_by_one_wins_over_the_profile() -> None:
    cfg = BrokerConfig(storage="s3://bucket", flush_interval_ms=40)
    assert (cfg.flush_profile, cfg.flush_interval_ms, cfg.flush_bytes) == ("cost", 40, 8 * MIB)
    cfg = BrokerConfig(storage="file:///b", flush_profile="cost", flush_bytes=MIB, max_inflight_flushes=2)
    assert (cfg.flush_interval_ms, cfg.flush_bytes, cfg.max_inflight_flushes) == (250, MIB, 2)
    assert BrokerConfig(storage="s3://b", flush_interval_ms=0).flush_interval_ms == 0
    assert BrokerConfig(storage="s3://b", max_inflight_requests=5).max_inflight_requests == 5


def _parse(argv: list[str]) -> BrokerConfig:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.from_namespace(parser.parse_args(argv))


def test_flags_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parse(["--storage", "s3://b"]).flush_interval_ms == 250
    assert _parse(["--storage", "s3://b", "--flush-profile", "latency"]).flush_interval_ms == 10
    assert _parse(["--storage", "s3://b", "--flush-interval-ms", "100"]).flush_interval_ms == 100
    monkeypatch.setenv("FLOE_FLUSH_PROFILE", "latency")
    assert _parse(["--storage", "s3://b"]).flush_interval_ms == 10
    # A flag on the command line wins over the variable.
    assert _parse(["--storage", "s3://b", "--flush-profile", "cost"]).flush_interval_ms == 250
    monkeypatch.setenv("FLOE_FLUSH_INTERVAL_MS", "30")
    cfg = _parse(["--storage", "s3://b", "--flush-profile", "cost"])
    assert (cfg.flush_interval_ms, cfg.flush_bytes) == (30, 8 * MIB)


def test_bad_flush_settings_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["--storage", "s3://b", "--flush-profile", "cheap"])
    assert "expected one of auto, latency, cost" in capsys.readouterr().err
    with pytest.raises(ValueError, match="flush_bytes must be at least 1"):
        BrokerConfig(storage="s3://b", flush_bytes=0)
    with pytest.raises(ValueError, match="max_inflight_flushes"):
        BrokerConfig(storage="s3://b", max_inflight_flushes=-5)
    with pytest.raises(argparse.ArgumentTypeError):
        BrokerConfig(storage="s3://b", flush_profile="fast")


# ---- behaviour on real brokers -----------------------------------------------------------


def _samples(b: BrokerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(b.metrics_text()) for s in fam.samples}


def _value(got: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return got.get((name, frozenset(labels.items())), 0.0)


def _wal_puts(b: BrokerProcess) -> float:
    return _value(_samples(b), "floe_objectstore_requests_total", op="put", kind="wal")


def _broker_config(b: BrokerProcess, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    (node,) = admin.list_topics(timeout=30).brokers
    resource = ConfigResource(ResourceType.BROKER, str(node))
    got = admin.describe_configs([resource])[resource].result(30)
    entry = got.get(name)
    assert entry is not None, sorted(got)
    return str(entry.value)


def test_s3_default_bounds_wal_puts_by_the_interval_and_acks_within_it(brokers, moto_s3) -> None:  # type: ignore[no-untyped-def]
    """At a trickle to ten partitions, WAL PUTs stay at about one per 250 ms, and acks come in time."""
    b = brokers(s3_spec(moto_s3, f"fp{uuid.uuid4().hex[:8]}", flush_profile=None))
    assert _broker_config(b, "log.flush.interval.ms") == "250"
    topic = f"fp-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 10)

    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    latencies: list[float] = []
    errors: list[object] = []

    def delivered(err, _msg, sent):  # type: ignore[no-untyped-def]
        if err is not None:
            errors.append(err)
        else:
            latencies.append(time.monotonic() - sent)

    # Warm up (connections, metadata, the first PUT) before counting.
    p.produce(topic, b"warm", partition=0, on_delivery=lambda e, m: None)
    assert p.flush(30) == 0

    window = 4.0
    rate = 50  # records per second, spread over all partitions
    puts0 = _wal_puts(b)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < window:
        due = start + n / rate
        now = time.monotonic()
        if now < due:
            p.poll(due - now)
            continue
        p.produce(topic, b"v" * 100, partition=n % 10,
                  on_delivery=lambda e, m, s=now: delivered(e, m, s))
        n += 1
    assert p.flush(30) == 0
    elapsed = time.monotonic() - start
    puts = _wal_puts(b) - puts0

    assert not errors, errors[:3]
    assert len(latencies) == n
    # One PUT per 250 ms interval (plus the flush the last records fall in), nowhere near one
    # per produce request: 50 requests/s at the latency profile would be about 200 PUTs here.
    assert 1 <= puts <= elapsed / 0.25 + 4, puts
    # Group commit: most records share a flush with others, so a typical ack waits a good part
    # of the interval...
    latencies.sort()
    assert latencies[len(latencies) // 2] >= 0.05, latencies[len(latencies) // 2]
    # ...and no ack waits longer than the interval plus a PUT to moto on a shared machine.
    assert latencies[-1] <= 0.25 + 1.0, latencies[-1]


def test_latency_profile_on_s3_flushes_within_milliseconds(brokers, moto_s3) -> None:  # type: ignore[no-untyped-def]
    b = brokers(s3_spec(moto_s3, f"fp{uuid.uuid4().hex[:8]}", flush_profile=None), "--flush-profile", "latency")
    assert _broker_config(b, "log.flush.interval.ms") == "10"
    topic = f"fp-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    p.produce(topic, b"warm", on_delivery=lambda e, m: None)
    assert p.flush(30) == 0
    latencies: list[float] = []
    for _ in range(20):
        t0 = time.monotonic()
        p.produce(topic, b"x", on_delivery=lambda e, m, s=t0: latencies.append(time.monotonic() - s))
        assert p.flush(30) == 0
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.2, latencies


def test_at_a_high_rate_flushes_are_cut_by_size(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """Once a flush's bytes fill up before its interval, each PUT carries about --flush-bytes."""
    flush_bytes = 256 * 1024
    b = brokers(file_store, "--flush-profile", "cost", "--flush-interval-ms", "5000",
                "--flush-bytes", str(flush_bytes))
    topic = f"fp-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 4)
    before = _samples(b)

    total = 8 * MIB
    value = b"r" * 4096
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 64 * 1024})
    acked: list[float] = []
    t0 = time.monotonic()
    for i in range(total // len(value)):
        while True:
            try:
                p.produce(topic, value, partition=i % 4,
                          on_delivery=lambda e, m: acked.append(time.monotonic()) if e is None else None)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    after = _samples(b)
    assert len(acked) == total // len(value)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    by_size = delta("floe_wal_flushes_total", reason="size")
    by_interval = delta("floe_wal_flushes_total", reason="interval")
    puts = delta("floe_objectstore_requests_total", op="put", kind="wal")
    written = delta("floe_objectstore_written_bytes_total", kind="wal")
    # At most one PUT per --flush-bytes written, plus the tail's flush and a checkpoint's barrier;
    # a flush is cut once it reaches --flush-bytes, so it may overshoot by one request's chunk.
    assert written >= total
    assert puts <= written / flush_bytes + 3, (puts, written)
    assert by_size >= puts - 3, (by_size, by_interval, puts)
    assert written / puts >= flush_bytes * 0.75, written / puts
    # Had the 5 s interval been what cut them, 8 MiB would have taken at least 5 s to be acked
    # in full; by size it is acked as fast as it arrives.
    assert by_interval <= 2, by_interval
    assert acked[len(acked) // 2] - t0 < 5.0


def test_cost_profile_gives_no_false_acks_while_the_store_is_down(brokers, moto_s3) -> None:  # type: ignore[no-untyped-def]
    """I2 with long flushes: a flush whose PUT fails is never acknowledged, and acks resume after."""
    from tests.infra.s3_fault_proxy import S3FaultProxy

    with S3FaultProxy(moto_s3.endpoint) as proxy:
        b = brokers(s3_spec(moto_s3, f"fp{uuid.uuid4().hex[:8]}", endpoint=proxy.endpoint, flush_profile=None))
        topic = f"fp-{uuid.uuid4().hex[:8]}"
        create_topic(b.bootstrap, topic, 2)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
                      "message.timeout.ms": 60000})
        acked: list[tuple[int, int, bytes, float]] = []

        def delivered(err, msg):  # type: ignore[no-untyped-def]
            if err is None:
                acked.append((msg.partition(), msg.offset(), msg.value(), time.monotonic()))

        for i in range(20):
            p.produce(topic, f"before-{i}".encode(), partition=i % 2, on_delivery=delivered)
        assert p.flush(30) == 0
        proxy.fail(status=503)
        outage = time.monotonic()
        for i in range(20):
            p.produce(topic, f"during-{i}".encode(), partition=i % 2, on_delivery=delivered)
        # The outage lasts several flush intervals: a duration, not a synchronisation.
        deadline = outage + 2.0
        while time.monotonic() < deadline:
            p.poll(0.1)
        assert not [a for a in acked if a[2].startswith(b"during")], "acknowledged while the store was down"
        proxy.heal()
        assert p.flush(60) == 0
        assert sum(1 for a in acked if a[2].startswith(b"during")) == 20
        for partition in (0, 1):
            ledger = {o: v for part, o, v, _ in acked if part == partition}
            got = {m.offset(): m.value() for m in consume_exactly(b.bootstrap, topic, partition, 0, len(ledger))}
            assert got == ledger


def test_cost_profile_keeps_up_with_a_default_librdkafka_producer(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """2 MB/s over ten partitions in small requests (linger.ms 5): every ack waits about one interval.

    Each request waits for its flush, so a connection needs about rate × interval / request size
    requests in progress (here about a hundred); fewer, and the producer's queue grows without end.
    """
    b = brokers(file_store, "--flush-profile", "cost")
    topic = f"fp-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 10)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    latencies: list[float] = []
    value = b"d" * 1000
    per_s, window = 2000, 6.0
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < window:
        due = start + n / per_s
        now = time.monotonic()
        if now < due:
            p.poll(min(due - now, 0.01))
            continue
        p.produce(topic, value, partition=n % 10,
                  on_delivery=lambda e, m, s=now: latencies.append(time.monotonic() - s) if e is None else None)
        n += 1
    assert p.flush(60) == 0
    assert len(latencies) == n
    latencies.sort()
    # A backlog would make the later acks wait seconds; the interval plus scheduling on a shared
    # machine is well under one.
    assert latencies[int(len(latencies) * 0.9)] <= 1.5, latencies[int(len(latencies) * 0.9)]
