"""KIP-368: with ``connections.max.reauth.ms`` a SASL session ends; the client re-authenticates or is disconnected.

librdkafka re-authenticates on its own, so a producer keeps producing across
several session lifetimes; a raw client that does not is disconnected at
the end of its session, and one that re-authenticates as someone else is
refused.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from tests.infra.broker import wait_until
from tests.security.clients import confluent_conf
from tests.security.conftest import SecureBroker, start_secure_broker
from tests.security.raw import METADATA, RawClient

LIFETIME_MS = 2000


@pytest.fixture(scope="module")
def reauth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    tmp = tmp_path_factory.mktemp("reauth")
    b = start_secure_broker(tmp, f"file://{tmp / 'bucket'}", "--connections-max-reauth-ms", str(LIFETIME_MS))
    try:
        yield b
    finally:
        b.proc.stop()


def metadata(c: RawClient) -> object:
    return c.call(METADATA, 12, topics=None, allow_auto_topic_creation=False,
                  include_topic_authorized_operations=False)


def test_the_session_lifetime_is_announced(reauth_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", reauth_broker.ports["SASL_PLAINTEXT"]) as c:
        r = c.login_scram("SCRAM-SHA-256", "alice", "alice-pw")
        assert r.error_code == 0
        assert r.session_lifetime == datetime.timedelta(milliseconds=LIFETIME_MS)


def test_a_session_that_is_not_renewed_is_closed(reauth_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", reauth_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.login_plain("alice", "alice-pw").error_code == 0
        assert metadata(c) is not None
        t0 = time.monotonic()
        assert c.is_closed(timeout=LIFETIME_MS / 1000 + 8)
        assert time.monotonic() - t0 < LIFETIME_MS / 1000 + 5
    wait_until(lambda: "SASL session expired" in reauth_broker.proc.log_text(), 10, message="the close is logged")


def test_a_renewed_session_keeps_its_connection(reauth_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", reauth_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.login_scram("SCRAM-SHA-512", "alice", "alice-pw").error_code == 0
        deadline = time.monotonic() + 3 * LIFETIME_MS / 1000
        while time.monotonic() < deadline:
            time.sleep(LIFETIME_MS / 2000)
            assert c.login_scram("SCRAM-SHA-512", "alice", "alice-pw").error_code == 0
            assert metadata(c) is not None


def test_re_authenticating_as_someone_else_is_refused(reauth_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", reauth_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.login_plain("alice", "alice-pw").error_code == 0
        assert c.login_plain("bob", "bob-pw").error_code == 58
        assert c.is_closed()


def test_librdkafka_re_authenticates_and_keeps_producing(reauth_broker: SecureBroker) -> None:
    producer = Producer({**confluent_conf(reauth_broker, "sasl_ssl_scram512"), "linger.ms": 1})
    outcomes: list[object] = []
    end = time.monotonic() + 3 * LIFETIME_MS / 1000
    i = 0
    while time.monotonic() < end:
        producer.produce("reauth", f"v{i}".encode(), on_delivery=lambda err, msg: outcomes.append(err))
        producer.poll(0.05)
        i += 1
    assert producer.flush(30) == 0
    assert outcomes and all(err is None for err in outcomes), [e for e in outcomes if e][:3]
    assert "re-authenticated" in reauth_broker.proc.log_text()


def test_re_authenticating_with_another_mechanism_is_refused(reauth_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", reauth_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.login_scram("SCRAM-SHA-256", "alice", "alice-pw").error_code == 0
        assert c.handshake("PLAIN").error_code == 34
        assert c.is_closed()


def test_a_v0_login_has_no_session_lifetime(reauth_broker: SecureBroker) -> None:
    """SaslAuthenticate v0 cannot carry a lifetime, so (as in Kafka) such a session does not expire."""
    with RawClient("127.0.0.1", reauth_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.handshake("PLAIN").error_code == 0
        assert c.authenticate(b"\0alice\0alice-pw", version=0).error_code == 0
        assert not c.is_closed(timeout=LIFETIME_MS / 1000 + 1)
        assert metadata(c) is not None



def test_kafka_python_re_authenticates_and_keeps_producing(reauth_broker: SecureBroker) -> None:
    from kafka import KafkaProducer

    from tests.security.clients import kafka_python_conf

    renewed = reauth_broker.proc.log_text().count("re-authenticated")
    producer = KafkaProducer(**kafka_python_conf(reauth_broker, "sasl_plaintext_plain"), acks="all")
    try:
        producer.send("kp-reauth", b"before").get(30)
        wait_until(lambda: reauth_broker.proc.log_text().count("re-authenticated") > renewed,
                   LIFETIME_MS / 1000 + 10, message="kafka-python re-authenticates")
        producer.send("kp-reauth", b"after").get(30)
    finally:
        producer.close()


def test_aiokafka_without_re_authentication_reconnects_when_its_session_ends(reauth_broker: SecureBroker) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    from tests.security.clients import aiokafka_conf

    def expired() -> int:
        return reauth_broker.proc.log_text().count("SASL session expired")

    async def run() -> None:
        before = expired()
        producer = AIOKafkaProducer(**aiokafka_conf(reauth_broker, "sasl_plaintext_plain"), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("ak-reauth", b"before")
            # the broker closes the session it never renewed (polled in a thread: the check blocks)
            await asyncio.to_thread(wait_until, lambda: expired() > before, LIFETIME_MS / 1000 + 10,
                                    message="the broker closes the expired session")
            await producer.send_and_wait("ak-reauth", b"after")
        finally:
            await producer.stop()

    asyncio.run(run())
