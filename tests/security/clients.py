"""How each real client library connects to each kind of listener, and one round trip with each.

A round trip is what a user does first: create a topic (an admin call),
produce, consume the records back in a consumer group that commits, and
read the committed offset. Every client gets the same checks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import uuid
from typing import Any

from tests.infra.broker import wait_until
from tests.security.conftest import USERS, SecureBroker

MODES = {
    # mode -> (listener, mechanism); mTLS authenticates with the client certificate
    "sasl_ssl_scram512": ("SASL_SSL", "SCRAM-SHA-512"),
    "sasl_plaintext_plain": ("SASL_PLAINTEXT", "PLAIN"),
    "mtls": ("SSL", None),
}
N = 20


def confluent_conf(b: SecureBroker, mode: str, user: str = "alice", password: str | None = None) -> dict[str, Any]:
    listener, mechanism = MODES[mode]
    conf: dict[str, Any] = {"bootstrap.servers": b.bootstrap(listener), "security.protocol": listener}
    if mechanism:
        conf |= {"sasl.mechanism": mechanism, "sasl.username": user,
                 "sasl.password": USERS[user] if password is None else password}
    if listener in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = b.ca_file
    if mode == "mtls":
        conf |= {"ssl.certificate.location": str(b.client.cert), "ssl.key.location": str(b.client.key)}
    return conf


def kafka_python_conf(b: SecureBroker, mode: str) -> dict[str, Any]:
    listener, mechanism = MODES[mode]
    conf: dict[str, Any] = {"bootstrap_servers": b.bootstrap(listener), "security_protocol": listener}
    if mechanism:
        conf |= {"sasl_mechanism": mechanism, "sasl_plain_username": "alice", "sasl_plain_password": USERS["alice"]}
    if listener in ("SSL", "SASL_SSL"):
        conf["ssl_cafile"] = b.ca_file
    if mode == "mtls":
        conf |= {"ssl_certfile": str(b.client.cert), "ssl_keyfile": str(b.client.key)}
    return conf


def aiokafka_conf(b: SecureBroker, mode: str) -> dict[str, Any]:
    listener, mechanism = MODES[mode]
    conf: dict[str, Any] = {"bootstrap_servers": b.bootstrap(listener), "security_protocol": listener}
    if mechanism:
        conf |= {"sasl_mechanism": mechanism, "sasl_plain_username": "alice", "sasl_plain_password": USERS["alice"]}
    if listener in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=b.ca_file)
        if mode == "mtls":
            ctx.load_cert_chain(str(b.client.cert), str(b.client.key))
        conf["ssl_context"] = ctx
    return conf


def kcat_args(b: SecureBroker, mode: str) -> list[str]:
    return [f"-X{k}={v}" for k, v in confluent_conf(b, mode).items() if k != "bootstrap.servers"] + [
        "-b", b.bootstrap(MODES[mode][0])]


def values(topic: str) -> list[bytes]:
    return [f"{topic}-{i}".encode() for i in range(N)]


# ---- round trips ---------------------------------------------------------------------------


def confluent_round_trip(b: SecureBroker, mode: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = confluent_conf(b, mode)
    topic = f"cf-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)  # kept alive until the future resolves
    admin.create_topics([NewTopic(topic, 2, replication_factor=1)])[topic].result(30)
    p = Producer({**conf, "linger.ms": 2})
    for v in values(topic):
        p.produce(topic, v)
    assert p.flush(30) == 0
    group = f"g-{topic}"
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[bytes] = []

    def drained() -> bool:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
        return len(got) >= N

    wait_until(drained, 60, interval=0, message="confluent consumer read everything")
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    c.close()
    assert sorted(got) == sorted(values(topic))
    assert sum(tp.offset for tp in committed) == N


def kafka_python_round_trip(b: SecureBroker, mode: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    conf = kafka_python_conf(b, mode)
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(**conf)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    p = KafkaProducer(**conf, acks="all")
    for v in values(topic):
        p.send(topic, v)
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, **conf, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=20_000)
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == N:
            break
    c.commit()
    from kafka import TopicPartition
    committed = c.committed(TopicPartition(topic, 0))
    c.close()
    assert got == values(topic)
    assert committed == N


def aiokafka_round_trip(b: SecureBroker, mode: str) -> None:
    async def run() -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        conf = aiokafka_conf(b, mode)
        topic = f"ak-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(**conf)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
        p = AIOKafkaProducer(**conf, acks="all")
        await p.start()
        try:
            for v in values(topic):
                await p.send_and_wait(topic, v)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, **conf, group_id=f"g-{topic}", auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            got = []
            async with asyncio.timeout(60):
                async for m in c:
                    got.append(m.value)
                    if len(got) == N:
                        break
            await c.commit()
            committed = await c.committed(TopicPartition(topic, 0))
        finally:
            await c.stop()
        assert got == values(topic)
        assert committed == N

    asyncio.run(run())


def kcat_round_trip(b: SecureBroker, mode: str) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed on every test machine"
    topic = f"kc-{uuid.uuid4().hex[:8]}"
    args = kcat_args(b, mode)
    listing = subprocess.run([kcat, *args, "-L", "-J"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    brokers = [x["name"] for x in json.loads(listing.stdout)["brokers"]]
    assert brokers == [f"127.0.0.1:{b.ports[MODES[mode][0]]}"], "metadata names the listener kcat connected to"
    payload = "\n".join(v.decode() for v in values(topic)) + "\n"
    produced = subprocess.run([kcat, *args, "-P", "-t", topic, "-X", "topic.request.required.acks=-1"],
                              input=payload, capture_output=True, text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    group = f"g-{topic}"
    consumed = subprocess.run([kcat, *args, "-G", group, topic, "-o", "beginning", "-c", str(N), "-e",
                               "-X", "auto.offset.reset=earliest"],
                              capture_output=True, text=True, timeout=90)
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.split()) == sorted(v.decode() for v in values(topic))


ROUND_TRIPS = {
    "confluent-kafka": confluent_round_trip,
    "kafka-python": kafka_python_round_trip,
    "aiokafka": aiokafka_round_trip,
    "kcat": kcat_round_trip,
}
