"""Security on Kubernetes, against the kmock emulator: the cluster Secret, listeners, StreamUsers.

The operator runs for real (kopf + floe_operator.main); the Kafka admin
calls of StreamUsers go to :class:`FakeKafka`, injected as
``memo.user_admin_factory``, which keeps credentials and ACLs the way a
broker would so that describe answers what earlier calls did.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import sc_samples

from conftest import SU, Api, eventually, running_operator
from floe_operator.kafka_admin import Acl, Connection, KafkaAdminError

SECRETS = "v1/secrets"
CLUSTER_SECRET = "demo-cluster-secrets"
TLS_KEYS = ["tls.crt", "tls.key", "ca.crt"]


class FakeKafka:
    """The cluster's SCRAM credentials and ACLs, and every admin client the operator opened on them."""

    def __init__(self) -> None:
        self.scram: dict[tuple[str, str], str] = {}
        self.acls: set[Acl] = set()
        self.connections: list[Connection] = []
        self.calls: list[str] = []
        self.fail: str | None = None  # make every call fail with this message

    def client(self, connection: Connection) -> FakeAdmin:
        self.connections.append(connection)
        return FakeAdmin(self)


class FakeAdmin:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    def _call(self, name: str) -> None:
        self.kafka.calls.append(name)
        if self.kafka.fail:
            raise KafkaAdminError(self.kafka.fail)

    async def upsert_scram(self, user: str, mechanism: str, password: str) -> None:
        self._call("upsert_scram")
        self.kafka.scram[(user, mechanism)] = password

    async def delete_scram(self, user: str, mechanism: str) -> None:
        self._call("delete_scram")
        self.kafka.scram.pop((user, mechanism), None)

    async def acls_of(self, principal: str) -> set[Acl]:
        self._call("acls_of")
        return {a for a in self.kafka.acls if a.principal == principal}

    async def create_acls(self, acls: Iterable[Acl]) -> None:
        self._call("create_acls")
        self.kafka.acls |= set(acls)

    async def delete_acls(self, acls: Iterable[Acl]) -> None:
        self._call("delete_acls")
        self.kafka.acls -= set(acls)

    async def close(self) -> None:
        pass


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
async def secured_operator(api: Api, tmp_path: Any, kafka: FakeKafka) -> AsyncIterator[None]:
    async with running_operator(api, tmp_path, user_admin_factory=kafka.client):
        yield


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def user(api: Api, name: str = "app") -> dict[str, Any]:
    obj = api.get(SU, name)
    assert obj is not None
    return obj


async def secure_cluster(api: Api) -> None:
    await api.create_secret("demo-tls", TLS_KEYS)
    await api.create_secret("demo-mtls", TLS_KEYS)
    await api.create_cluster(sc_samples.SECURE)
    await eventually(lambda: api.get("v1/configmaps", "demo-config"))


# ---- the cluster Secret ---------------------------------------------------------------------


async def test_the_cluster_secret_is_made_once_owned_mounted_and_kept(api: Api, secured_operator: None) -> None:
    await api.create_cluster(sc_samples.MINIMAL)
    await eventually(lambda: api.get("apps/v1/deployments", "demo-broker"))
    secret = api.get(SECRETS, CLUSTER_SECRET)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["name"] == "demo"
    values = decoded(secret)
    assert set(values) == {"cluster-secret", "admin-token", "operator-password", "bootstrap-users"}
    assert len(values["cluster-secret"]) >= 40 and values["cluster-secret"] != values["admin-token"]
    assert values["bootstrap-users"] == f"floe-operator:{values['operator-password']}\n"

    pod = api.get("apps/v1/deployments", "demo-broker")["spec"]["template"]["spec"]  # type: ignore[index]
    assert {"name": "cluster-secrets", "secret": {"secretName": CLUSTER_SECRET, "defaultMode": 0o440}} in pod["volumes"]
    config = api.get("v1/configmaps", "demo-config")["data"]  # type: ignore[index]
    assert config["FLOE_CLUSTER_SECRET_FILE"] == "/etc/floe/secrets/cluster-secret"
    assert config["FLOE_ADMIN_TOKEN_FILE"] == "/etc/floe/secrets/admin-token"

    writes = api.writes(SECRETS)
    await api.patch_cluster({"config": {"flushIntervalMs": 50}})
    await eventually(lambda: api.get("v1/configmaps", "demo-config")["data"].get("FLOE_FLUSH_INTERVAL_MS") == "50")
    await eventually(lambda: api.cluster().get("status", {}).get("observedGeneration") == 2)
    assert decoded(api.get(SECRETS, CLUSTER_SECRET)) == values  # type: ignore[arg-type]
    assert api.writes(SECRETS) == writes, "the Secret is created once, never rewritten"
    everything = json.dumps(api.cluster()) + json.dumps(api.events())
    for value in (values["cluster-secret"], values["admin-token"], values["operator-password"]):
        assert value not in everything, "no secret in the status or the Events"


async def test_a_key_removed_from_the_cluster_secret_is_added_back_and_the_others_kept(
        api: Api, secured_operator: None) -> None:
    await api.create_cluster(sc_samples.MINIMAL)
    await eventually(lambda: api.get(SECRETS, CLUSTER_SECRET))
    before = decoded(api.get(SECRETS, CLUSTER_SECRET))  # type: ignore[arg-type]
    await api.request("PATCH", f"/api/v1/namespaces/streaming/secrets/{CLUSTER_SECRET}",
                      {"data": {"admin-token": None}})
    assert "admin-token" not in decoded(api.get(SECRETS, CLUSTER_SECRET))  # type: ignore[arg-type]
    await api.patch_cluster({"config": {"flushIntervalMs": 60}})
    after = await eventually(lambda: (d := decoded(api.get(SECRETS, CLUSTER_SECRET))).get("admin-token") and d)  # type: ignore[arg-type]
    assert after["cluster-secret"] == before["cluster-secret"]
    assert after["operator-password"] == before["operator-password"]


# ---- listeners ---------------------------------------------------------------------------------


async def test_listeners_reach_the_brokers_once_their_tls_secrets_exist(api: Api, secured_operator: None) -> None:
    await api.create_secret("demo-tls", ["tls.crt", "tls.key"])
    await api.create_cluster(sc_samples.SECURE)
    degraded = await eventually(lambda: conditions(api.cluster()).get("Degraded", {}).get("status") == "True"
                                and conditions(api.cluster())["Degraded"])
    assert degraded["reason"] == "MissingSecret"
    assert "demo-mtls" in degraded["message"] and "tls.crt, tls.key, ca.crt" in degraded["message"]
    assert api.get("apps/v1/deployments", "demo-broker") is None, "nothing is applied while a Secret is missing"

    await api.create_secret("demo-mtls", ["tls.crt", "tls.key"])
    await eventually(lambda: "has no key ca.crt" in conditions(api.cluster())["Degraded"]["message"])
    await api.request("DELETE", "/api/v1/namespaces/streaming/secrets/demo-mtls")
    await api.create_secret("demo-mtls", TLS_KEYS)

    await eventually(lambda: api.get("apps/v1/deployments", "demo-broker"), within=15)
    config = api.get("v1/configmaps", "demo-config")["data"]  # type: ignore[index]
    assert config["FLOE_LISTENERS"] == "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9093,MTLS://0.0.0.0:9094"
    assert config["FLOE_LISTENER_SECURITY_PROTOCOL_MAP"] == "INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_SSL,MTLS:SSL"
    assert config["FLOE_SUPER_USERS"] == "User:floe-operator;User:admin;User:CN=ops"
    container = api.get("apps/v1/deployments", "demo-broker")["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert [p["name"] for p in container["ports"]] == ["internal", "external", "mtls", "admin"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLOE_ADVERTISED_LISTENERS"].startswith("INTERNAL://$(POD_IP):9092,")
    bootstrap = api.get("v1/services", "demo-bootstrap")
    assert [p["port"] for p in bootstrap["spec"]["ports"]] == [9092, 9093, 9094, 9644]  # type: ignore[index]
    await eventually(lambda: conditions(api.cluster()).get("Degraded", {}).get("status") == "False")


# ---- StreamUsers -----------------------------------------------------------------------------------

ACLS = {"acls": [
    {"resource": {"type": "topic", "name": "orders", "patternType": "prefixed"}, "operations": ["Read", "Write"]},
    {"resource": {"type": "group", "name": "app"}, "operations": ["Read"]},
]}


def acl(resource: str, name: str, op: str, pattern: str = "literal") -> Acl:
    return Acl(resource, name, pattern, "User:app", "*", op, "allow")


async def test_a_stream_user_gets_its_credential_acls_and_client_secret(
        api: Api, secured_operator: None, kafka: FakeKafka) -> None:
    await secure_cluster(api)
    await api.create_user({"cluster": "demo", "authorization": ACLS})
    await eventually(lambda: conditions(user(api)).get("Ready", {}).get("status") == "True")

    operator_password = decoded(api.get(SECRETS, CLUSTER_SECRET))["operator-password"]  # type: ignore[arg-type]
    conn = kafka.connections[-1]
    assert (conn.bootstrap, conn.security_protocol, conn.mechanism, conn.username) == (
        "demo-bootstrap.streaming.svc.cluster.local:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512", "floe-operator")
    assert conn.password == operator_password
    password = kafka.scram[("app", "SCRAM-SHA-512")]
    assert kafka.acls == {acl("topic", "orders", "Read", "prefixed"), acl("topic", "orders", "Write", "prefixed"),
                          acl("group", "app", "Read")}

    secret = api.get(SECRETS, "app")
    assert secret is not None and secret["metadata"]["ownerReferences"][0]["kind"] == "StreamUser"
    client = decoded(secret)
    assert client["password"] == client["sasl.password"] == password and len(password) >= 24
    assert client["sasl.username"] == "app" and client["sasl.mechanism"] == "SCRAM-SHA-512"
    assert client["security.protocol"] == "SASL_PLAINTEXT"
    assert client["bootstrap.servers"] == "demo-bootstrap.streaming.svc.cluster.local:9092"
    assert client["sasl.jaas.config"] == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                          f'username="app" password="{password}";')
    status = user(api)["status"]
    assert status["username"] == "app" and status["secret"] == "app"
    assert password not in json.dumps(status) + json.dumps(api.events())

    # an update: one ACL goes, one comes; the generated password stays
    await api.patch_user({"authorization": {"acls": [
        {"resource": {"type": "topic", "name": "orders", "patternType": "prefixed"}, "operations": ["Read"]},
        {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]}]}})
    await eventually(lambda: kafka.acls == {acl("topic", "orders", "Read", "prefixed"),
                                            acl("cluster", "kafka-cluster", "IdempotentWrite")})
    assert kafka.scram[("app", "SCRAM-SHA-512")] == password

    # delete: the finalizer removes the credential and every ACL, then the object goes
    await api.delete_user()
    await eventually(lambda: api.get(SU, "app") is None)
    assert kafka.scram == {} and kafka.acls == set()


async def test_a_password_from_a_secret_is_used_and_a_missing_one_is_degraded(
        api: Api, secured_operator: None, kafka: FakeKafka) -> None:
    await secure_cluster(api)
    ref = {"valueFrom": {"secretKeyRef": {"name": "app-pw", "key": "pw"}}}
    await api.create_user({"cluster": "demo", "authentication": {"type": "scram-sha-512", "password": ref}})
    degraded = await eventually(lambda: conditions(user(api)).get("Degraded"))
    assert degraded["status"] == "True" and degraded["reason"] == "MissingSecret"
    assert "app-pw" in degraded["message"]
    assert kafka.scram == {}, "nothing is applied before the password is there"
    await api.create_secret("app-pw", [], {"pw": "chosen-by-me"})
    await eventually(lambda: kafka.scram.get(("app", "SCRAM-SHA-512")) == "chosen-by-me", within=15)
    await eventually(lambda: conditions(user(api))["Ready"]["status"] == "True")


@pytest.mark.parametrize(
    ("cluster", "spec", "reason", "words"),
    [
        (None, {"cluster": "nope"}, "ClusterNotFound", "nope"),
        (sc_samples.MINIMAL, {"cluster": "demo"}, "NoScramListener", "no listener with authentication scram-sha-512"),
        ({**sc_samples.SECURE, "authorization": None}, {"cluster": "demo", "authorization": ACLS},
         "AuthorizationDisabled", "spec.authorization"),
        (sc_samples.SECURE, {"cluster": "demo", "authentication": {"type": "scram-sha-1"}}, "InvalidSpec",
         "spec.authentication.type"),
    ],
)
async def test_a_stream_user_that_cannot_work_is_degraded_with_a_message_and_an_event(
        api: Api, secured_operator: None, kafka: FakeKafka, cluster: dict[str, Any] | None, spec: dict[str, Any],
        reason: str, words: str) -> None:
    if cluster is not None:
        await api.create_secret("demo-tls", TLS_KEYS)
        await api.create_secret("demo-mtls", TLS_KEYS)
        await api.create_cluster({k: v for k, v in cluster.items() if v is not None})
        await eventually(lambda: api.get(SECRETS, CLUSTER_SECRET))
    await api.create_user(spec)
    degraded = await eventually(lambda: conditions(user(api)).get("Degraded"))
    assert degraded["status"] == "True" and degraded["reason"] == reason and words in degraded["message"]
    assert conditions(user(api))["Ready"]["status"] == "False"
    await eventually(lambda: any(e.get("reason") == reason and e.get("type") == "Warning" for e in api.events()))
    assert kafka.scram == {} and kafka.acls == set()


async def test_a_kafka_admin_failure_is_degraded_and_retried(
        api: Api, secured_operator: None, kafka: FakeKafka) -> None:
    await secure_cluster(api)
    kafka.fail = "Broker: Cluster authorization failed"
    await api.create_user({"cluster": "demo"})
    degraded = await eventually(lambda: conditions(user(api)).get("Degraded"))
    assert degraded["reason"] == "KafkaAdminFailed" and "authorization failed" in degraded["message"]
    assert api.get(SECRETS, "app") is None
    kafka.fail = None
    await eventually(lambda: conditions(user(api))["Ready"]["status"] == "True", within=15)
    assert ("app", "SCRAM-SHA-512") in kafka.scram
