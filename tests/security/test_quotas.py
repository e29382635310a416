"""Client quotas: Kafka's entity precedence and rate, the admin APIs, and a noisy tenant held to its quota.

The admin APIs (DescribeClientQuotas, AlterClientQuotas) are not in the
Python clients, so they go over a socket encoded with ``kio``; the traffic
that is throttled comes from confluent-kafka producers.
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import struct
import threading
import time
import typing
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from floe_api.internal import AlterQuotas, QuotaChange
from floe_broker.cluster.metadata import ClusterState, apply_op
from floe_broker.dispatch import Dispatcher
from floe_broker.protocol.build import mk
from floe_broker.security.principal import PRINCIPAL, Principal
from floe_broker.security.quotas import (
    FETCH_RATE,
    PRODUCE_RATE,
    QuotaTracker,
    Rate,
    entity_key,
    quota_for,
    throttle_ms,
)
from floe_broker.security.throttle import MUTE, Mute
from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.batches import record_batch
from tests.infra.frames import read_frame
from tests.inprocess.harness import CONFIG, started_broker
from tests.inprocess.wire import PEER, decode_response, encode_request
from tests.inprocess.wire import request as entity
from tests.security.kafka_wire import request

DESCRIBE, ALTER, PRODUCE_API = 48, 49, 0
KIB = 1024


# ---- which quota applies, and the rate ---------------------------------------------------------------

def _quotas(*entries: tuple[list[tuple[str, str | None]], float]) -> dict[str, dict[str, float]]:
    return {entity_key(e): {PRODUCE_RATE: v} for e, v in entries}


def test_the_most_specific_entity_wins_in_kafkas_order() -> None:
    q = _quotas(([("client-id", None)], 1), ([("client-id", "app")], 2), ([("user", None)], 3),
                ([("user", None), ("client-id", None)], 4), ([("user", "alice")], 5),
                ([("user", "alice"), ("client-id", "app")], 6))
    assert quota_for(q, "alice", "app", PRODUCE_RATE) == (6, ("alice", "app"))
    assert quota_for(q, "alice", "other", PRODUCE_RATE) == (5, ("alice", "")), "a user quota is shared"
    assert quota_for(q, "bob", "app", PRODUCE_RATE) == (4, ("bob", "app"))
    only_clients = _quotas(([("client-id", None)], 1), ([("client-id", "app")], 2))
    assert quota_for(only_clients, "bob", "app", PRODUCE_RATE) == (2, ("", "app"))
    assert quota_for(only_clients, "bob", "x", PRODUCE_RATE) == (1, ("", "x")), "each client id its own default"
    assert quota_for(only_clients, "bob", "x", FETCH_RATE) is None


def test_rate_counts_at_least_the_whole_window_span() -> None:
    r = Rate(window_s=1.0, windows=11)
    r.record(1000, now=0.0)
    assert r.span(0.0) == 10.0 and r.value(0.0) == 100.0  # a first request is not a burst
    for t in range(1, 30):
        r.record(1000, now=float(t))
    assert abs(r.value(29.0) - 1000) < 150, "steady 1000 B/s reads as 1000 B/s once the windows are full"


def test_throttle_brings_the_rate_back_to_the_quota() -> None:
    assert throttle_ms(100, 100, 10) == 0
    assert throttle_ms(150, 100, 10) == 5000
    tracker = QuotaTracker(window_s=1.0, windows=11)
    q = _quotas(([("client-id", "noisy")], 100 * KIB))
    assert tracker.record(q, "u", "quiet", PRODUCE_RATE, 10**9, 0.0) == 0, "no quota, no throttle"
    assert tracker.record(q, "u", "noisy", PRODUCE_RATE, 100 * KIB, 0.0) == 0
    assert tracker.record(q, "u", "noisy", PRODUCE_RATE, 10 * 100 * KIB, 0.1) > 0


def test_quotas_live_in_cluster_metadata() -> None:
    state = ClusterState()
    apply_op(state, AlterQuotas(changes=[QuotaChange(entity=[("user", "alice")], set={PRODUCE_RATE: 1e6})]))
    again = ClusterState.from_bytes(state.to_bytes())
    assert again.quotas == {entity_key([("user", "alice")]): {PRODUCE_RATE: 1e6}}
    apply_op(again, AlterQuotas(changes=[QuotaChange(entity=[("user", "alice")], remove=[PRODUCE_RATE])]))
    assert again.quotas == {}, "an entity with no quota left is forgotten"


# ---- the admin APIs ------------------------------------------------------------------------------------

def _element(cls: Any, field: str) -> Any:
    hint = typing.get_type_hints(cls)[field]
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is tuple:
            return typing.get_args(candidate)[0]
    raise AssertionError(field)


def alter(address: str, entity: list[tuple[str, str | None]], ops: dict[str, float | None], *,
          client_id: str = "admin") -> Any:
    cls = load_request_schema(ALTER, 1)
    entry_cls = _element(cls, "entries")
    entity_cls, op_cls = _element(entry_cls, "entity"), _element(entry_cls, "ops")
    body = mk(cls, validate_only=False, entries=(mk(
        entry_cls, entity=tuple(mk(entity_cls, entity_type=t, entity_name=n) for t, n in entity),
        ops=tuple(mk(op_cls, key=k, value=v or 0.0, remove=v is None) for k, v in ops.items())),))
    return request(address, ALTER, 1, body, client_id=client_id).entries[0]


def describe(address: str, components: list[tuple[str, int, str | None]], *, strict: bool = False) -> Any:
    cls = load_request_schema(DESCRIBE, 1)
    comp_cls = _element(cls, "components")
    body = mk(cls, strict=strict, components=tuple(
        mk(comp_cls, entity_type=t, match_type=m, match=n) for t, m, n in components))
    return request(address, DESCRIBE, 1, body, client_id="admin")


def _described(resp: Any) -> dict[tuple[tuple[str, str | None], ...], dict[str, float]]:
    assert resp.error_code == ErrorCode.none, resp
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity): {v.key: v.value for v in entry.values}
            for entry in resp.entries}


def test_alter_and_describe_client_quotas(brokers: BrokerFactory, file_store: StoreSpec) -> None:
    b = brokers(file_store)
    assert alter(b.bootstrap, [("user", "alice")], {PRODUCE_RATE: 1000.0}).error_code == ErrorCode.none
    assert alter(b.bootstrap, [("user", "alice"), ("client-id", None)], {FETCH_RATE: 2000.0}).error_code == 0
    assert alter(b.bootstrap, [("client-id", "app")], {PRODUCE_RATE: 3000.0}).error_code == 0
    everything = _described(describe(b.bootstrap, []))
    assert everything == {
        (("user", "alice"),): {PRODUCE_RATE: 1000.0},
        (("client-id", None), ("user", "alice")): {FETCH_RATE: 2000.0},
        (("client-id", "app"),): {PRODUCE_RATE: 3000.0},
    }
    exact_user = _described(describe(b.bootstrap, [("user", 0, "alice")]))
    assert set(exact_user) == {(("user", "alice"),), (("client-id", None), ("user", "alice"))}
    strict = _described(describe(b.bootstrap, [("user", 0, "alice")], strict=True))
    assert set(strict) == {(("user", "alice"),)}
    default_client = _described(describe(b.bootstrap, [("client-id", 1, None)]))
    assert set(default_client) == {(("client-id", None), ("user", "alice"))}

    # what Floe would not enforce is refused, not stored
    assert alter(b.bootstrap, [("ip", "1.2.3.4")], {"connection_creation_rate": 5.0}).error_code == \
        ErrorCode.invalid_request
    assert alter(b.bootstrap, [("user", "bob")], {"request_percentage": 5.0}).error_code == ErrorCode.invalid_request
    assert alter(b.bootstrap, [("user", "bob")], {PRODUCE_RATE: -1.0}).error_code == ErrorCode.invalid_request
    # removing the last quota of an entity removes the entity
    assert alter(b.bootstrap, [("client-id", "app")], {PRODUCE_RATE: None}).error_code == ErrorCode.none
    assert (("client-id", "app"),) not in _described(describe(b.bootstrap, []))


def test_only_a_principal_allowed_to_alter_cluster_configs_may_set_quotas(
        brokers: BrokerFactory, file_store: StoreSpec) -> None:
    b = brokers(file_store, "--authorizer", "on", "--super-users", "User:admin",
                "--insecure-principal-from-client-id", "true")
    refused = alter(b.bootstrap, [("user", "mallory")], {PRODUCE_RATE: 1e9}, client_id="mallory")
    assert refused.error_code == ErrorCode.cluster_authorization_failed
    assert alter(b.bootstrap, [("user", "alice")], {PRODUCE_RATE: 1e6}).error_code == ErrorCode.none


# ---- a noisy tenant is held to its quota, its neighbour is not -------------------------------------------

QUOTA = 256 * KIB  # bytes/s for client id "noisy"
WARMUP_S, RUN_S = 5.0, 30.0
VALUE = b"x" * KIB


class Meter:
    """Acknowledged bytes with their times, and the throttle reports the client got."""

    def __init__(self) -> None:
        self.acked: list[tuple[float, int]] = []
        self.throttled = 0
        self.errors: list[Any] = []

    def delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.acked.append((time.monotonic(), len(msg.value())))

    def rate(self, start: float, end: float) -> float:
        return sum(n for t, n in self.acked if start <= t < end) / (end - start)


def _flood(producer: Producer, topic: str, until: float) -> None:
    """As fast as the client lets us: the quota, not the test, limits it."""
    while time.monotonic() < until:
        try:
            producer.produce(topic, VALUE)
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)


def _steady(producer: Producer, topic: str, until: float, rate: float) -> None:
    """At ``rate`` bytes/s, in 100 ms steps: an ordinary neighbour."""
    step = 0.1
    per_step = max(int(rate * step) // len(VALUE), 1)
    t = time.monotonic()
    while t < until:
        for _ in range(per_step):
            producer.produce(topic, VALUE)
        producer.poll(0)
        t += step
        time.sleep(max(t - time.monotonic(), 0))
    producer.flush(30)


def test_a_client_over_its_produce_quota_is_throttled_to_it_while_another_is_not(
        brokers: BrokerFactory, file_store: StoreSpec) -> None:
    b = brokers(file_store)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("noisy", 1), NewTopic("quiet", 1)])["noisy"].result(20)
    assert alter(b.bootstrap, [("client-id", "noisy")], {PRODUCE_RATE: float(QUOTA)}).error_code == ErrorCode.none

    noisy, quiet = Meter(), Meter()
    noisy_p, quiet_p = Producer(_conf(b.bootstrap, "noisy", noisy)), Producer(_conf(b.bootstrap, "quiet", quiet))
    start = time.monotonic()
    until = start + WARMUP_S + RUN_S
    threads = [threading.Thread(target=_flood, args=(noisy_p, "noisy", until)),
               threading.Thread(target=_steady, args=(quiet_p, "quiet", until, 2 * QUOTA))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RUN_S * 3)
    window = (start + WARMUP_S, start + WARMUP_S + RUN_S)
    noisy_rate, quiet_rate = noisy.rate(*window), quiet.rate(*window)
    print(f"quota {QUOTA / KIB:.0f} KiB/s: noisy {noisy_rate / KIB:.0f} KiB/s (throttled {noisy.throttled}x), "
          f"quiet {quiet_rate / KIB:.0f} KiB/s (throttled {quiet.throttled}x)")
    assert not noisy.errors and not quiet.errors
    assert 0.8 * QUOTA <= noisy_rate <= 1.2 * QUOTA, f"noisy ran at {noisy_rate / QUOTA:.2f}x its quota"
    assert noisy.throttled > 0, "the client was told it was throttled"
    assert quiet_rate >= 0.9 * 2 * QUOTA, f"the neighbour got {quiet_rate / KIB:.0f} KiB/s of the 512 it sent"
    assert quiet.throttled == 0


def _conf(bootstrap: str, client_id: str, meter: Meter) -> dict[str, Any]:
    def throttled(event: Any) -> None:
        if event.throttle_time > 0:
            meter.throttled += 1

    return {"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5, "enable.idempotence": False,
            "queue.buffering.max.kbytes": 4096, "throttle_cb": throttled,
            "on_delivery": meter.delivered}


# ---- a client that ignores throttle_time_ms is held back by the broker --------------------------------

def _produce_frame(topic: str, size: int, correlation_id: int) -> bytes:
    body = entity(PRODUCE_API, 9, acks=-1, timeout=datetime.timedelta(seconds=10), topic_data=[
        {"name": topic, "partition_data": [{"index": 0, "records": record_batch(b"x" * size)}]}])
    frame = encode_request(PRODUCE_API, 9, body, correlation_id=correlation_id, client_id="greedy")
    return struct.pack(">i", len(frame)) + frame


def test_a_client_ignoring_its_throttle_is_muted(brokers: BrokerFactory, file_store: StoreSpec) -> None:
    """Pipelined produce requests sent all at once still get through only at the quota's pace."""
    b = brokers(file_store, "--quota-windows", "2")  # a short window, so the pace shows within seconds
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("greedy", 1)])["greedy"].result(20)
    assert alter(b.bootstrap, [("client-id", "greedy")], {PRODUCE_RATE: float(QUOTA)}).error_code == ErrorCode.none
    count, size = 24, 64 * KIB  # 1.5 MiB: about 6 s at the quota
    frames = b"".join(_produce_frame("greedy", size, i) for i in range(count))
    host, _, port = b.bootstrap.rpartition(":")
    throttles: list[int] = []
    with socket.create_connection((host, int(port)), timeout=60) as s:
        start = time.monotonic()
        sender = threading.Thread(target=s.sendall, args=(frames,))  # blocks while the broker does not read
        sender.start()
        for _ in range(count):
            raw = read_frame(s)
            _, resp = decode_response(PRODUCE_API, 9, [struct.pack(">i", len(raw)) + raw])
            assert resp.responses[0].partition_responses[0].error_code == ErrorCode.none
            throttles.append(_ms(resp.throttle_time))
        elapsed = time.monotonic() - start
        sender.join(10)
    print(f"{count * size / KIB:.0f} KiB pipelined against {QUOTA / KIB:.0f} KiB/s: {elapsed:.1f} s, "
          f"throttled {sum(t > 0 for t in throttles)} of {count} responses")
    assert any(throttles), "the responses say the client is throttled"
    assert elapsed >= 0.6 * (count * size - 2 * QUOTA) / QUOTA, f"all {count} requests served in {elapsed:.1f} s"


def _ms(value: Any) -> int:
    return int(value.total_seconds() * 1000) if hasattr(value, "total_seconds") else int(value)


# ---- fetch quotas ------------------------------------------------------------------------------------------

def _drain(bootstrap: str, client_id: str, topic: str, expected: int) -> float:
    """Seconds a consumer with ``client_id`` takes to read ``expected`` messages of ``topic``."""
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id, "group.id": f"g-{client_id}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got, start = 0, None
        deadline = time.monotonic() + 120
        while got < expected and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error() is not None:
                continue
            start = start or time.monotonic()
            got += 1
        assert got == expected, f"{client_id} read {got} of {expected}"
        assert start is not None
        return time.monotonic() - start
    finally:
        c.close()


def test_a_consumer_over_its_fetch_quota_is_throttled_while_another_is_not(
        brokers: BrokerFactory, file_store: StoreSpec) -> None:
    b = brokers(file_store, "--quota-windows", "2")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("history", 1)])["history"].result(20)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20})
    count = 4 * 1024  # 4 MiB of 1 KiB messages
    for _ in range(count):
        p.produce("history", VALUE)
        p.poll(0)
    assert p.flush(30) == 0
    assert alter(b.bootstrap, [("client-id", "slow-reader")], {FETCH_RATE: 512.0 * KIB}).error_code == 0
    throttled = _drain(b.bootstrap, "slow-reader", "history", count)
    free = _drain(b.bootstrap, "fast-reader", "history", count)
    print(f"4 MiB read with a 512 KiB/s fetch quota in {throttled:.1f} s, without one in {free:.1f} s")
    assert throttled >= 3, "4 MiB at 512 KiB/s takes seconds even after the first window's allowance"
    assert free < throttled / 2


# ---- user quotas: the principal's name is the user entity ----------------------------------------------------

async def test_a_user_quota_throttles_that_principal_on_every_client_id_and_nobody_else() -> None:
    async with started_broker(dataclasses.replace(CONFIG, quota_windows=2)) as broker:
        await broker.serving.create_topic("t", 1, {})
        await broker.serving.apply_metadata(AlterQuotas(changes=[
            QuotaChange(entity=[("user", "alice")], set={PRODUCE_RATE: 100.0 * KIB})]))
        d = Dispatcher(broker.serving)

        async def produce_as(principal: str, client_id: str) -> tuple[int, float]:
            """(throttle_time_ms answered, how far the connection's mute reaches) for one 64 KiB produce."""
            mute, principal_token = Mute(), PRINCIPAL.set(Principal.parse(principal))
            mute_token = MUTE.set(mute)
            try:
                body = entity(PRODUCE_API, 9, acks=-1, timeout=datetime.timedelta(seconds=10), topic_data=[
                    {"name": "t", "partition_data": [{"index": 0, "records": record_batch(b"x" * 64 * KIB)}]}])
                parts = await d(encode_request(PRODUCE_API, 9, body, client_id=client_id), PEER)
            finally:
                MUTE.reset(mute_token)
                PRINCIPAL.reset(principal_token)
            assert parts is not None
            _, resp = decode_response(PRODUCE_API, 9, parts)
            assert resp.responses[0].partition_responses[0].error_code == ErrorCode.none
            return _ms(resp.throttle_time), mute.until - time.monotonic()

        assert (await produce_as("User:alice", "one"))[0] == 0, "the first 64 KiB fit in the window"
        throttle, muted_for = await produce_as("User:alice", "two")
        assert throttle > 0, "alice's second client id shares her quota"
        assert muted_for > 0.5 * throttle / 1000, "and its connection is muted for as long"
        for _ in range(3):
            throttle_bob, _ = await produce_as("User:bob", "one")
            assert throttle_bob == 0, "bob has no quota"
