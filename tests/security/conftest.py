"""A broker process with every kind of listener, test certificates and bootstrap users.

``secure_broker`` (one per module, to spare the CPU) listens on
PLAINTEXT, SSL (client certificates requested), SASL_PLAINTEXT and SASL_SSL,
with PLAIN and both SCRAM mechanisms enabled and two users seeded from a
bootstrap file. Tests reach it the way users do: real clients, kcat, and a
raw socket client for the attacks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.broker import BrokerProcess, free_port
from tests.security.certs import CertificateAuthority, Issued, server_secret

USERS = {"admin": "admin-secret", "alice": "alice-pw", "bob": "bob-pw"}


@dataclass
class SecureBroker:
    proc: BrokerProcess
    ports: dict[str, int]
    ca: CertificateAuthority
    ssl_dir: Path
    client: Issued  # a client certificate for CN=alice,OU=eng
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)

    def bootstrap(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    @property
    def ca_file(self) -> str:
        return str(self.ca.ca_path)


def listener_flags(ports: dict[str, int]) -> list[str]:
    return ["--listeners", ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())]


def start_secure_broker(tmp: Path, storage: str, *extra: str, cluster: str = "sec",
                        users: dict[str, str] | None = None, ca: CertificateAuthority | None = None,
                        kafka_port: int | None = None) -> SecureBroker:
    ca = ca or CertificateAuthority(tmp / "ca")
    ssl_dir = tmp / f"server-{uuid.uuid4().hex[:6]}"
    server_secret(ca, ssl_dir)
    client = ca.issue("alice", tmp / "client-alice", ou="eng", server=False)
    users_file = tmp / f"users-{uuid.uuid4().hex[:6]}"
    users_file.write_text("# seeded on first start\n" + "".join(f"{u}:{p}\n" for u, p in (users or USERS).items()))
    proc = BrokerProcess(storage=storage, cluster=cluster, log_path=tmp / f"broker-{uuid.uuid4().hex[:6]}.log",
                         env={}, extra=[])
    if kafka_port:
        proc.kafka_port = kafka_port
    ports = {"PLAINTEXT": proc.kafka_port, "SSL": free_port(), "SASL_PLAINTEXT": free_port(),
             "SASL_SSL": free_port()}
    proc.extra = [
        *listener_flags(ports), "--ssl-dir", str(ssl_dir), "--ssl-client-auth", "requested",
        "--ssl-principal-mapping-rules", "RULE:^CN=([a-zA-Z0-9.-]*),.*$/$1/L,DEFAULT",
        "--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "--sasl-bootstrap-users-file", str(users_file), "--ssl-handshake-timeout-ms", "4000",
        "--ssl-reload-interval-ms", "200", "--session-timeout-ms", "3000", "--fsync", "false",
        "--flush-interval-ms", "2", *extra,
    ]
    proc.start()
    return SecureBroker(proc, ports, ca, ssl_dir, client, tmp)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    tmp = tmp_path_factory.mktemp("secure")
    b = start_secure_broker(tmp, f"file://{tmp / 'bucket'}")
    try:
        yield b
    finally:
        b.proc.stop()
