"""SCRAM credentials through Kafka's APIs, on two brokers sharing a bucket.

AdminClient's ``alter_user_scram_credentials`` (what ``kafka-configs
--alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type users``
sends) creates, changes and deletes users at either broker; the change is
in force at the other one within a metadata push, the old password is
refused, a deleted user is refused, and the bucket never holds a password.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from tests.infra.broker import wait_until
from tests.security.clients import confluent_conf
from tests.security.conftest import USERS, SecureBroker, start_secure_broker
from tests.security.raw import RawClient

AUTH_FAILED = 58


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecureBroker, SecureBroker]]:
    tmp = tmp_path_factory.mktemp("pair")
    storage = f"file://{tmp / 'bucket'}"
    first = start_secure_broker(tmp, storage)
    second = None
    try:
        second = start_secure_broker(tmp, storage, ca=first.ca)
        yield first, second
    finally:
        for b in (first, second):
            if b is not None:
                b.proc.stop()


_ADMINS: dict[int, AdminClient] = {}


def admin(b: SecureBroker) -> AdminClient:
    """One AdminClient per broker, kept alive (a collected client cancels its pending futures)."""
    port = b.ports["SASL_SSL"]
    if port not in _ADMINS:
        _ADMINS[port] = AdminClient(confluent_conf(b, "sasl_ssl_scram512", user="admin"))
    return _ADMINS[port]


def login(b: SecureBroker, user: str, password: str, mechanism: str = "SCRAM-SHA-512") -> int:
    with RawClient("127.0.0.1", b.ports["SASL_PLAINTEXT"]) as c:
        if mechanism == "PLAIN":
            return int(c.login_plain(user, password).error_code)
        return int(c.login_scram(mechanism, user, password).error_code)


def upsert(a: AdminClient, user: str, password: str, mechanism: ScramMechanism = ScramMechanism.SCRAM_SHA_512,
           iterations: int = 8192) -> None:
    futures = a.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, iterations), password.encode())])
    futures[user].result(30)


def test_a_new_user_works_on_every_broker_and_describe_shows_no_secret(pair: tuple[SecureBroker, SecureBroker]) -> None:
    first, second = pair
    upsert(admin(first), "carol", "carol-pw-1")
    upsert(admin(first), "carol", "carol-pw-1", ScramMechanism.SCRAM_SHA_256, 4096)
    wait_until(lambda: login(second, "carol", "carol-pw-1") == 0, 10, message="carol can log in at the other broker")
    assert login(second, "carol", "carol-pw-1", "SCRAM-SHA-256") == 0
    assert login(second, "carol", "carol-pw-1", "PLAIN") == 0, "PLAIN checks the same store"
    described = admin(second).describe_user_scram_credentials(["carol"])["carol"].result(30)
    got = {(i.mechanism, i.iterations) for i in described.scram_credential_infos}
    assert got == {(ScramMechanism.SCRAM_SHA_512, 8192), (ScramMechanism.SCRAM_SHA_256, 4096)}


def test_a_changed_password_is_in_force_everywhere_within_a_push(pair: tuple[SecureBroker, SecureBroker]) -> None:
    first, second = pair
    upsert(admin(first), "dave", "dave-old")
    wait_until(lambda: login(second, "dave", "dave-old") == 0, 10, message="dave exists everywhere")
    t0 = time.monotonic()
    upsert(admin(second), "dave", "dave-new")
    wait_until(lambda: login(first, "dave", "dave-new") == 0, 10, message="the new password works at the other broker")
    took = time.monotonic() - t0
    for b in pair:
        assert login(b, "dave", "dave-old") == AUTH_FAILED
        assert login(b, "dave", "dave-old", "PLAIN") == AUTH_FAILED
        assert login(b, "dave", "dave-new") == 0
    print(f"password change in force at the other broker after {took:.3f}s")


def test_a_deleted_user_is_refused(pair: tuple[SecureBroker, SecureBroker]) -> None:
    first, second = pair
    upsert(admin(first), "erin", "erin-pw")
    wait_until(lambda: login(second, "erin", "erin-pw") == 0, 10, message="erin exists everywhere")
    futures = admin(second).alter_user_scram_credentials(
        [UserScramCredentialDeletion("erin", ScramMechanism.SCRAM_SHA_512)])
    futures["erin"].result(30)
    wait_until(lambda: login(first, "erin", "erin-pw") == AUTH_FAILED, 10, message="erin refused everywhere")
    assert login(second, "erin", "erin-pw", "PLAIN") == AUTH_FAILED
    with pytest.raises(Exception, match="(?i)not exist|RESOURCE_NOT_FOUND"):
        admin(first).describe_user_scram_credentials(["erin"])["erin"].result(30)


def test_bad_alterations_get_kafka_error_codes(pair: tuple[SecureBroker, SecureBroker]) -> None:
    first, _ = pair
    a = admin(first)
    with pytest.raises(Exception, match="(?i)iterations|UNACCEPTABLE_CREDENTIAL"):
        upsert(a, "frank", "pw", iterations=100)
    futures = a.alter_user_scram_credentials([UserScramCredentialDeletion("nobody", ScramMechanism.SCRAM_SHA_256)])
    with pytest.raises(Exception, match="(?i)not exist|RESOURCE_NOT_FOUND"):
        futures["nobody"].result(30)
    assert login(first, "frank", "pw") == AUTH_FAILED


def test_the_bucket_holds_keys_never_passwords(pair: tuple[SecureBroker, SecureBroker]) -> None:
    first, _ = pair
    upsert(admin(first), "grace", "grace-very-secret")
    bucket = Path(first.proc.storage.removeprefix("file://"))
    contents = b"".join(p.read_bytes() for p in bucket.rglob("*") if p.is_file())
    assert b"stored_key" in contents, "the credentials are in cluster metadata"
    for secret in ("grace-very-secret", *USERS.values()):
        assert secret.encode() not in contents


def test_a_restart_with_the_bootstrap_file_keeps_a_changed_password(pair: tuple[SecureBroker, SecureBroker]) -> None:
    first, second = pair
    upsert(admin(first), "bob", "bob-changed")
    wait_until(lambda: login(second, "bob", "bob-changed") == 0, 10, message="bob's new password everywhere")
    third = start_secure_broker(first.tmp, first.proc.storage, ca=first.ca)  # same bootstrap users (bob:bob-pw)
    try:
        assert login(third, "bob", "bob-changed") == 0
        assert login(third, "bob", "bob-pw") == AUTH_FAILED
    finally:
        third.proc.stop()


@pytest.mark.parametrize("listener", ["SASL_SSL", "SASL_PLAINTEXT", "PLAINTEXT"])
def test_every_broker_is_advertised_on_the_listener_the_client_used(pair: tuple[SecureBroker, SecureBroker],
                                                                     listener: str) -> None:
    first, second = pair
    conf = {**confluent_conf(first, "sasl_ssl_scram512"), "bootstrap.servers": first.bootstrap(listener),
            "security.protocol": listener}
    if "SASL" not in listener:
        conf = {k: v for k, v in conf.items() if not k.startswith("sasl.")}
    client = AdminClient(conf)
    want = sorted(b.ports[listener] for b in pair)
    # a broker killed by an earlier test stays listed until its session times out
    wait_until(lambda: sorted(b.port for b in client.list_topics(timeout=20).brokers.values()) == want, 30,
               message=f"the brokers' {listener} ports")
