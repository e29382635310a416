"""What an attacker or a misconfigured client gets: Kafka's error code, then a closed connection; nothing else breaks.

Wrong password, unknown user, unknown mechanism, SaslAuthenticate out of
order, a request before authentication, plaintext bytes or a truncated
ClientHello on a TLS port, and a thousand failed logins in a row. After
each, the broker still serves: a real client logs in and works.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from tests.infra.broker import wait_until
from tests.security.clients import confluent_conf
from tests.security.conftest import SecureBroker
from tests.security.raw import METADATA, RawClient

AUTH_FAILED, UNSUPPORTED_MECHANISM, ILLEGAL_STATE = 58, 33, 34


def still_serves(b: SecureBroker) -> None:
    """A real client on the SASL_SSL listener logs in and reads metadata."""
    assert AdminClient(confluent_conf(b, "sasl_ssl_scram512")).list_topics(timeout=20).brokers


def tls_context(b: SecureBroker) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=b.ca_file)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
@pytest.mark.parametrize(("user", "password"), [("alice", "not-her-password"), ("mallory", "alice-pw")])
def test_wrong_password_or_unknown_user_is_refused_and_closed(secure_broker: SecureBroker, mechanism: str,
                                                              user: str, password: str) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        if mechanism == "PLAIN":
            r = c.login_plain(user, password)
        else:
            r = c.login_scram(mechanism, user, password)
        assert r.error_code == AUTH_FAILED
        # the same words whether the user exists or not: no user enumeration
        assert r.error_message == ("Authentication failed during authentication due to invalid credentials "
                                   f"with SASL mechanism {mechanism}")
        assert c.is_closed()
    assert password not in secure_broker.proc.log_text()
    still_serves(secure_broker)


def test_passwords_never_reach_the_log(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        c.login_plain("alice", "hunter2-secret-guess")
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        c.login_plain("alice", "alice-pw")
    log = secure_broker.proc.log_text()
    for secret in ("hunter2-secret-guess", "alice-pw", "admin-secret", "bob-pw"):
        assert secret not in log


def test_a_real_client_with_a_wrong_password_sees_an_authentication_error(secure_broker: SecureBroker) -> None:
    seen: list[KafkaError] = []
    admin = AdminClient({**confluent_conf(secure_broker, "sasl_ssl_scram512", password="nope"),
                         "error_cb": seen.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)

    def told() -> bool:
        admin.poll(0.2)  # error callbacks are served by poll
        return any(e.code() == KafkaError._AUTHENTICATION and "invalid credentials" in e.str() for e in seen)

    wait_until(told, 20, message="the client reports an authentication error")


def test_unknown_mechanism_is_refused_and_closed(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        r = c.handshake("GSSAPI")
        assert r.error_code == UNSUPPORTED_MECHANISM
        assert set(r.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        assert c.is_closed()
    still_serves(secure_broker)


def test_authenticate_before_handshake_is_an_illegal_state(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        r = c.authenticate(b"\0alice\0alice-pw")
        assert r.error_code == ILLEGAL_STATE
        assert c.is_closed()


def test_a_second_handshake_mid_login_is_an_illegal_state(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.handshake("SCRAM-SHA-256").error_code == 0
        assert c.handshake("PLAIN").error_code == ILLEGAL_STATE
        assert c.is_closed()


@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_a_request_before_authentication_closes_the_connection(secure_broker: SecureBroker, listener: str) -> None:
    tls = tls_context(secure_broker) if listener == "SASL_SSL" else None
    with RawClient("127.0.0.1", secure_broker.ports[listener], tls=tls) as c:
        assert c.call(18, 3, client_software_name="raw", client_software_version="1").error_code == 0
        c.send(METADATA, 12, _metadata_body())
        assert c.is_closed()
    wait_until(lambda: "metadata before SASL authentication" in secure_broker.proc.log_text(), 10,
               message="the close is logged")
    still_serves(secure_broker)


def test_a_request_after_a_half_done_login_closes_the_connection(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.handshake("PLAIN").error_code == 0
        c.send(METADATA, 12, _metadata_body())
        assert c.is_closed()


def test_a_huge_frame_before_authentication_closes_the_connection(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        c.sock.sendall(struct.pack(">i", 10 * 1024 * 1024) + b"\0" * 1024)
        assert c.is_closed()


def _metadata_body() -> object:
    from kio.index import load_request_schema

    from floe_broker.protocol.build import mk
    return mk(load_request_schema(METADATA, 12), topics=None, allow_auto_topic_creation=False,
              include_topic_authorized_operations=False)


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_plaintext_bytes_to_a_tls_port_close_the_connection(secure_broker: SecureBroker, listener: str) -> None:
    with RawClient("127.0.0.1", secure_broker.ports[listener]) as c:  # no TLS
        c.send(18, 3, _api_versions_body())
        assert c.is_closed()
    wait_until(lambda: "TLS handshake failed" in secure_broker.proc.log_text(), 10, message="the close is logged")
    still_serves(secure_broker)


def _api_versions_body() -> object:
    from kio.index import load_request_schema

    from floe_broker.protocol.build import mk
    return mk(load_request_schema(18, 3), client_software_name="raw", client_software_version="1")


def _client_hello() -> bytes:
    """The first flight of a real TLS client, as bytes."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("cut", [5, 60])
def test_a_truncated_client_hello_is_closed_at_the_handshake_timeout(secure_broker: SecureBroker, cut: int) -> None:
    hello = _client_hello()
    assert len(hello) > cut
    with socket.create_connection(("127.0.0.1", secure_broker.ports["SASL_SSL"]), timeout=10) as s:
        s.sendall(hello[:cut])
        t0 = time.monotonic()
        s.settimeout(15)
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 10, "closed by the handshake timeout (4 s here), not left open"
    still_serves(secure_broker)


def test_a_thousand_failed_logins_in_a_row_leave_the_broker_and_other_connections_working(
        secure_broker: SecureBroker) -> None:
    topic = "flood-survivor"
    conf = confluent_conf(secure_broker, "sasl_ssl_scram512")
    producer = Producer({**conf, "linger.ms": 1})
    delivered: list[object] = []
    failed: list[object] = []
    stop = threading.Event()

    def keep_producing() -> None:
        i = 0
        while not stop.is_set():
            producer.produce(topic, f"v{i}".encode(),
                             on_delivery=lambda err, msg: (failed if err else delivered).append(err or msg))
            producer.poll(0.05)
            i += 1
        producer.flush(30)

    assert producer.flush(30) == 0
    worker = threading.Thread(target=keep_producing)
    worker.start()
    try:
        refused = 0
        for i in range(1000):
            with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
                r = c.login_scram("SCRAM-SHA-512", "alice", f"guess-{i}", forge_proof=True)
                assert r.error_code == AUTH_FAILED
                assert c.is_closed()
                refused += 1
        assert refused == 1000
    finally:
        stop.set()
        worker.join(60)
    assert not failed, failed[:3]
    assert len(delivered) > 10, "the authenticated producer kept working during the flood"
    still_serves(secure_broker)
    with RawClient("127.0.0.1", secure_broker.ports["SASL_PLAINTEXT"]) as c:
        assert c.login_scram("SCRAM-SHA-512", "alice", "alice-pw").error_code == 0


def test_sasl_on_a_listener_without_sasl_is_an_illegal_state(secure_broker: SecureBroker) -> None:
    with RawClient("127.0.0.1", secure_broker.ports["PLAINTEXT"]) as c:
        assert c.handshake("PLAIN").error_code == ILLEGAL_STATE
        assert c.is_closed()
    still_serves(secure_broker)
