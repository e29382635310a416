"""TLS listeners in process: the principal each connection gets, client certificates required, certificate reload.

The broker runs in this process (``tests.inprocess.harness``) with real
sockets, so the test can see the principal the dispatcher sets for each
request (``security.principal.PRINCIPAL``), which is what the authorizer
reads; the clients are real (confluent-kafka, Python's ``ssl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from cryptography import x509

from floe_broker.app import Broker
from floe_broker.security.bootstrap_users import seed_change
from floe_broker.security.principal import PRINCIPAL
from tests.infra.broker import free_port
from tests.inprocess.harness import CONFIG, started_broker
from tests.security.certs import CertificateAuthority, replace_atomically, server_secret


@dataclasses.dataclass
class TlsBroker:
    broker: Broker
    ports: dict[str, int]
    ca: CertificateAuthority
    ssl_dir: Path
    tmp: Path
    principals: list[str]

    def conf(self, listener: str, **extra: Any) -> dict[str, Any]:
        conf = {"bootstrap.servers": f"127.0.0.1:{self.ports[listener]}", "security.protocol": listener, **extra}
        if "SSL" in listener:
            conf["ssl.ca.location"] = str(self.ca.ca_path)
        return conf


@contextlib.asynccontextmanager
async def tls_broker(tmp: Path, *, client_auth: str, rules: str = "RULE:^CN=([A-Za-z]+),.*$/$1/L,DEFAULT"
                     ) -> AsyncIterator[TlsBroker]:
    ca = CertificateAuthority(tmp / "ca")
    ssl_dir = tmp / "server"
    server_secret(ca, ssl_dir)
    ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "SASL_SSL")}
    config = dataclasses.replace(
        CONFIG, listeners=",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()), ssl_dir=str(ssl_dir),
        ssl_client_auth=client_auth, ssl_principal_mapping_rules=rules, ssl_reload_interval_ms=100,
        sasl_enabled_mechanisms="SCRAM-SHA-512", auto_create_topics=True)
    async with started_broker(config, listen=True) as broker:
        await broker.controller_client.apply(await asyncio.to_thread(seed_change, {"bob": "bob-pw"}))
        seen: list[str] = []
        for listener in broker.endpoints.listeners:
            listener.dispatch = _recording(listener.dispatch, seen)
        yield TlsBroker(broker, ports, ca, ssl_dir, tmp, seen)


def _recording(dispatch: Any, seen: list[str]) -> Any:
    async def wrapped(frame: bytes, peer: str) -> Any:
        try:
            return await dispatch(frame, peer)
        finally:
            if int.from_bytes(frame[:2], "big") not in (17, 18, 36):  # ApiVersions and SASL come before login
                seen.append(str(PRINCIPAL.get()))  # what the dispatcher set for this request

    return wrapped


async def list_topics(conf: dict[str, Any], wait_s: float = 10) -> Any:
    return await asyncio.to_thread(lambda: AdminClient(conf).list_topics(timeout=wait_s))


async def test_each_connection_runs_as_its_authenticated_principal(tmp_path: Path) -> None:
    async with tls_broker(tmp_path, client_auth="requested") as b:
        client = b.ca.issue("Alice", tmp_path / "alice", ou="eng", server=False)
        cases = [
            (b.conf("PLAINTEXT"), "User:ANONYMOUS"),
            (b.conf("SSL"), "User:ANONYMOUS"),
            (b.conf("SSL", **{"ssl.certificate.location": str(client.cert), "ssl.key.location": str(client.key)}),
             "User:alice"),
            (b.conf("SASL_SSL", **{"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bob",
                                   "sasl.password": "bob-pw"}), "User:bob"),
        ]
        for conf, principal in cases:
            b.principals.clear()
            await list_topics(conf)
            assert b.principals and set(b.principals) == {principal}, (conf["security.protocol"], b.principals)


async def test_required_client_certificates_refuse_clients_without_one(tmp_path: Path) -> None:
    async with tls_broker(tmp_path, client_auth="required") as b:
        with pytest.raises(Exception):  # noqa: B017 - the handshake fails; the exact error is librdkafka's
            await list_topics(b.conf("SSL", **{"socket.timeout.ms": 3000}), wait_s=3)
        client = b.ca.issue("alice", tmp_path / "alice", server=False, ou="eng")
        await list_topics(b.conf("SSL", **{"ssl.certificate.location": str(client.cert),
                                           "ssl.key.location": str(client.key)}))
        other_ca = CertificateAuthority(tmp_path / "other-ca", name="Someone Else")
        stranger = other_ca.issue("alice", tmp_path / "stranger", server=False, ou="eng")
        with pytest.raises(Exception):  # noqa: B017
            await list_topics(b.conf("SSL", **{"ssl.certificate.location": str(stranger.cert),
                                               "ssl.key.location": str(stranger.key),
                                               "socket.timeout.ms": 3000}), wait_s=3)
        await list_topics(b.conf("PLAINTEXT"))  # the broker is fine


async def test_a_subject_no_rule_maps_is_refused(tmp_path: Path) -> None:
    async with tls_broker(tmp_path, client_auth="required", rules="RULE:^CN=admin,.*$/admin/") as b:
        client = b.ca.issue("alice", tmp_path / "alice", server=False, ou="eng")
        with pytest.raises(Exception):  # noqa: B017
            await list_topics(b.conf("SSL", **{"ssl.certificate.location": str(client.cert),
                                               "ssl.key.location": str(client.key)}), wait_s=3)


def _server_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


async def test_replaced_certificate_files_are_served_to_new_connections(tmp_path: Path) -> None:
    async with tls_broker(tmp_path, client_auth="none") as b:
        port = b.ports["SSL"]
        before = await asyncio.to_thread(_server_serial, port, b.ca.ca_path)
        old_conf = b.conf("SSL")
        renewed = server_secret(b.ca, tmp_path / "renewed")
        assert renewed.serial != before
        replace_atomically(tmp_path / "renewed", b.ssl_dir)
        for _ in range(100):
            if await asyncio.to_thread(_server_serial, port, b.ca.ca_path) == renewed.serial:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("new connections never got the renewed certificate")
        await list_topics(old_conf)


async def test_half_written_certificate_files_keep_the_old_certificate(tmp_path: Path) -> None:
    async with tls_broker(tmp_path, client_auth="none") as b:
        port = b.ports["SSL"]
        before = await asyncio.to_thread(_server_serial, port, b.ca.ca_path)
        (b.ssl_dir / "tls.crt").write_text("-----BEGIN CERTIFICATE-----\ntruncated")
        (tls,) = b.broker.endpoints.tls
        assert await tls.check() is False
        assert await asyncio.to_thread(_server_serial, port, b.ca.ca_path) == before


async def test_each_listener_may_have_its_own_certificate_and_client_certificate_rule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's StreamCluster with a SASL_SSL and an mTLS listener: FLOE_SSL_DIR_<NAME> and
    FLOE_SSL_CLIENT_AUTH_<NAME> give each its own Secret and rule (Kafka's listener.name.<name>.*)."""
    ca = CertificateAuthority(tmp_path / "ca")
    server_secret(ca, tmp_path / "external")
    server_secret(ca, tmp_path / "mtls")
    ports = {"EXTERNAL": free_port(), "MTLS": free_port()}
    monkeypatch.setenv("FLOE_SSL_DIR_EXTERNAL", str(tmp_path / "external"))
    monkeypatch.setenv("FLOE_SSL_DIR_MTLS", str(tmp_path / "mtls"))
    monkeypatch.setenv("FLOE_SSL_CLIENT_AUTH_MTLS", "required")
    config = dataclasses.replace(
        CONFIG, listeners=",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        listener_security_protocol_map="EXTERNAL:SASL_SSL,MTLS:SSL", sasl_enabled_mechanisms="SCRAM-SHA-512",
        ssl_principal_mapping_rules="RULE:^CN=([A-Za-z]+),.*$/$1/L,DEFAULT")
    async with started_broker(config, listen=True) as broker:
        await broker.controller_client.apply(await asyncio.to_thread(seed_change, {"bob": "bob-pw"}))
        assert len(broker.endpoints.tls) == 2, "one watched certificate per directory"
        ca_conf = {"ssl.ca.location": str(ca.ca_path)}
        sasl = {"bootstrap.servers": f"127.0.0.1:{ports['EXTERNAL']}", "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bob", "sasl.password": "bob-pw", **ca_conf}
        await list_topics(sasl)  # no client certificate needed on the SASL_SSL listener
        no_cert = {"bootstrap.servers": f"127.0.0.1:{ports['MTLS']}", "security.protocol": "SSL", **ca_conf}
        with pytest.raises(Exception):  # noqa: B017 - librdkafka reports the refused handshake as a timeout
            await list_topics(no_cert, wait_s=3)
        alice = ca.issue("Alice", tmp_path / "alice", server=False)
        await list_topics({**no_cert, "ssl.certificate.location": str(alice.cert),
                           "ssl.key.location": str(alice.key)})
