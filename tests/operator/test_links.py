"""StreamLinks on the Kubernetes API emulator (kmock), the real operator, and brokers played by a fake.

What a user sees: ``kubectl get streamlink`` shows each topic's state and lag
and Ready/Degraded conditions with a message to act on; the source's password
reaches the brokers only as a key of the cluster's link Secret (which the
broker pods mount), never in the link definition; a promotion asked for in
the spec waits while the link lags and goes through once it caught up;
deleting the StreamLink deletes the link on the brokers and its keys.
The fake brokers (``memo.link_admin_factory``) answer as ``/v1/links`` does,
including its refusal to promote while a partition lags.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sc_samples
from test_operator import KEYS

from conftest import NAMESPACE, SL, Api, eventually, running_operator
from floe_api.links import (
    MIRRORING,
    PROMOTED,
    LinkDefinition,
    LinkStatus,
    LinkTopicStatus,
    PartitionLag,
)
from floe_operator.link_admin import LinkAdminError

SECRETS = "v1/secrets"


class FakeBrokers:
    """The brokers' links as /v1/links keeps them: definitions, per-partition lag, promotion."""

    def __init__(self) -> None:
        self.links: dict[str, LinkDefinition] = {}
        self.lag: dict[str, int] = {"orders": 5}  # topic -> records behind the source (one partition each)
        self.promoted: set[str] = set()
        self.error: str | None = None
        self.unreachable = False
        self.tokens: list[str | None] = []
        self.puts = 0

    def client(self, url: str, *, token: str | None = None) -> FakeLinkAdmin:
        self.tokens.append(token)
        return FakeLinkAdmin(self)

    def status(self, name: str) -> LinkStatus:
        d = self.links[name]
        topics = [LinkTopicStatus(topic=t, state=PROMOTED if t in self.promoted else MIRRORING, partitions=[
            PartitionLag(topic=t, partition=0, node=1, floe_end=10, source_end=10 + lag, lag_records=lag,
                         lag_seconds=2.5 if lag else 0.0, bytes_mirrored=1000, state=MIRRORING,
                         error=self.error)]) for t, lag in sorted(self.lag.items())]
        return LinkStatus(name=name, bootstrap_servers=d.source.bootstrap_servers, topics=topics, groups=d.groups,
                          lag_records=sum(self.lag.values()))


class FakeLinkAdmin:
    def __init__(self, brokers: FakeBrokers) -> None:
        self.brokers = brokers

    def _reach(self) -> None:
        if self.brokers.unreachable:
            raise LinkAdminError("the brokers' admin API at http://demo-bootstrap:9644 did not answer: refused")

    async def put(self, definition: LinkDefinition) -> LinkStatus:
        self._reach()
        self.brokers.puts += 1
        self.brokers.links[definition.name] = definition
        return self.brokers.status(definition.name)

    async def status(self, name: str) -> LinkStatus | None:
        self._reach()
        return self.brokers.status(name) if name in self.brokers.links else None

    async def promote(self, name: str, topics: list[str] | None, *, force: bool) -> None:
        self._reach()
        chosen = topics or list(self.brokers.lag)
        lagging = [t for t in chosen if self.brokers.lag[t]]
        if lagging and not force:
            raise LinkAdminError(f"POST promote answered 409: link {name} still lags the source at "
                                 f"{', '.join(f'{t}-0' for t in lagging)}", 409)
        self.brokers.promoted |= set(chosen)

    async def delete(self, name: str) -> bool:
        self._reach()
        return self.brokers.links.pop(name, None) is not None

    async def close(self) -> None:
        pass


@pytest.fixture
def brokers() -> FakeBrokers:
    return FakeBrokers()


@pytest.fixture
async def link_operator(api: Api, tmp_path: Any, brokers: FakeBrokers) -> AsyncIterator[None]:
    async with running_operator(api, tmp_path, link_admin_factory=brokers.client):
        yield


SASL_LINK = {
    "cluster": "demo",
    "source": {"bootstrapServers": "kafka-1:9093", "securityProtocol": "SASL_SSL",
               "sasl": {"mechanism": "SCRAM-SHA-512", "username": "floe",
                        "passwordSecretRef": {"name": "kafka-link", "key": "password"}},
               "tls": {"caSecretRef": {"name": "kafka-link", "key": "ca.crt"}}},
    "topics": {"names": ["orders"]},
    "groups": {"names": ["billing"]},
}


async def create_link(api: Api, spec: dict[str, Any], name: str = "mig") -> None:
    body = {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamLink",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-link-{name}"}, "spec": spec}
    await api.request("POST", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamlinks", body)


async def patch_link(api: Api, spec: dict[str, Any], name: str = "mig") -> None:
    await api.request("PATCH", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamlinks/{name}", {"spec": spec})


def link(api: Api, name: str = "mig") -> dict[str, Any]:
    obj = api.get(SL, name)
    assert obj is not None
    return obj


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


async def running_cluster(api: Api) -> None:
    await api.create_secret("floe-s3", KEYS)
    await api.create_cluster(sc_samples.MINIO)
    await eventually(lambda: api.get(SECRETS, "demo-cluster-secrets"))


async def test_a_link_reaches_the_brokers_with_its_password_as_a_mounted_file_and_shows_lag(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    await create_link(api, SASL_LINK)
    ready = await eventually(lambda: conditions(link(api)).get("Ready"))
    assert ready["status"] == "True" and "1 topic(s) linked from kafka-1:9093" in ready["message"]
    status = link(api)["status"]
    assert status["topics"] == [{"name": "orders", "state": "mirroring", "partitions": 1, "lagRecords": 5,
                                 "lagSeconds": 2.5, "bytesMirrored": 1000}]
    assert status["lagRecords"] == 5 and status["secret"] == "demo-link-secrets"
    # the brokers get paths under the mounted link Secret, never the password
    source = brokers.links["mig"].source
    assert (source.sasl_password_file, source.ssl_cafile) == ("/etc/floe/link-secrets/mig.password",
                                                              "/etc/floe/link-secrets/mig.ca.crt")
    assert "s3cret" not in brokers.links["mig"].model_dump_json()
    secret = api.get(SECRETS, "demo-link-secrets")
    assert secret is not None
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "mig.password": "s3cret", "mig.ca.crt": "PEM"}
    assert secret["metadata"]["ownerReferences"][0]["name"] == "demo"  # goes with the cluster
    pod = api.get("apps/v1/deployments", "demo-broker")["spec"]["template"]["spec"]  # type: ignore[index]
    assert {"name": "link-secrets", "secret": {"secretName": "demo-link-secrets", "defaultMode": 0o440,
                                               "optional": True}} in pod["volumes"]
    # the admin API was called with the cluster's admin token
    token = base64.b64decode(api.get(SECRETS, "demo-cluster-secrets")["data"]["admin-token"]).decode()  # type: ignore[index]
    assert brokers.tokens and set(brokers.tokens) == {token}
    assert "s3cret" not in str(link(api)["status"])


async def test_a_second_link_keeps_the_first_ones_keys_and_deleting_one_removes_only_its_own(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    await api.create_secret("other-link", [], {"pw": "other"})
    await create_link(api, SASL_LINK)
    other = {**SASL_LINK, "source": {"bootstrapServers": "kafka-9:9092", "securityProtocol": "SASL_PLAINTEXT",
                                     "sasl": {"username": "u", "passwordSecretRef": {"name": "other-link",
                                                                                     "key": "pw"}}}}
    await create_link(api, other, name="second")

    def keys() -> set[str]:
        found = api.get(SECRETS, "demo-link-secrets")
        return set((found or {}).get("data") or {})

    await eventually(lambda: keys() == {"mig.password", "mig.ca.crt", "second.password"})
    await api.request("DELETE", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamlinks/second")
    await eventually(lambda: "second" not in brokers.links)
    await eventually(lambda: keys() == {"mig.password", "mig.ca.crt"})
    assert "mig" in brokers.links


@pytest.mark.parametrize(
    ("prepare", "reason", "words"),
    [
        ("no-cluster", "ClusterNotFound", "StreamCluster streaming/demo (spec.cluster) does not exist"),
        ("no-secret", "MissingSecret", "Secret streaming/kafka-link (spec.source.sasl.passwordSecretRef) does "
                                       "not exist"),
        ("source-down", "SourceError", "cannot reach kafka-1:9093"),
        ("admin-down", "AdminApiFailed", "did not answer"),
    ],
)
async def test_a_link_that_cannot_work_is_degraded_with_a_message_to_act_on(
        api: Api, link_operator: None, brokers: FakeBrokers, prepare: str, reason: str, words: str) -> None:
    if prepare != "no-cluster":
        await running_cluster(api)
    if prepare != "no-secret":
        await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    brokers.error = "cannot reach kafka-1:9093: KafkaConnectionError" if prepare == "source-down" else None
    brokers.unreachable = prepare == "admin-down"
    await create_link(api, SASL_LINK)
    degraded = await eventually(lambda: conditions(link(api)).get("Degraded", {}).get("status") == "True"
                                and conditions(link(api))["Degraded"])
    assert degraded["reason"] == reason and words in degraded["message"], degraded
    assert conditions(link(api))["Ready"]["status"] == "False"
    await eventually(lambda: any(e.get("reason") == reason for e in api.events())
                     if reason != "SourceError" else True)
    if prepare in ("no-cluster", "no-secret"):
        assert brokers.links == {}  # nothing applied before everything it needs exists


async def test_a_missing_secret_created_later_lets_the_link_become_ready(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await create_link(api, SASL_LINK)
    await eventually(lambda: conditions(link(api)).get("Degraded", {}).get("reason") == "MissingSecret")
    await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    await eventually(lambda: conditions(link(api)).get("Ready", {}).get("status") == "True", within=20)
    assert "mig" in brokers.links


async def test_promotion_waits_while_the_link_lags_and_goes_through_once_caught_up(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    await create_link(api, {**SASL_LINK, "promotion": {"topics": ["orders"]}})
    waiting = await eventually(lambda: conditions(link(api)).get("Promoted"))
    assert waiting["status"] == "False" and waiting["reason"] == "Lagging" and "orders-0" in waiting["message"]
    assert brokers.promoted == set()
    brokers.lag["orders"] = 0  # the source's producers stopped; the link caught up
    done = await eventually(lambda: conditions(link(api)).get("Promoted", {}).get("status") == "True"
                            and conditions(link(api))["Promoted"], within=30)  # the timer asks again
    assert "orders promoted" in done["message"] and brokers.promoted == {"orders"}
    assert link(api)["status"]["topics"][0]["state"] == "promoted"


async def test_a_forced_promotion_does_not_wait_for_the_lag(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    await create_link(api, SASL_LINK)
    await eventually(lambda: conditions(link(api)).get("Ready", {}).get("status") == "True")
    await patch_link(api, {"promotion": {"all": True, "force": True}})
    await eventually(lambda: brokers.promoted == {"orders"})
    await eventually(lambda: conditions(link(api)).get("Promoted", {}).get("status") == "True", within=30)


async def test_an_invalid_link_is_degraded_and_nothing_reaches_the_brokers(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await create_link(api, {**SASL_LINK, "topics": {}})
    degraded = await eventually(lambda: conditions(link(api)).get("Degraded"))
    assert degraded["reason"] == "InvalidSpec" and "topics needs names or a regex" in degraded["message"]
    assert brokers.links == {}


async def test_promoting_a_topic_the_link_does_not_have_says_so(
        api: Api, link_operator: None, brokers: FakeBrokers) -> None:
    await running_cluster(api)
    await api.create_secret("kafka-link", [], {"password": "s3cret", "ca.crt": "PEM"})
    await create_link(api, {**SASL_LINK, "promotion": {"topics": ["orders", "invoices"]}})
    waiting = await eventually(lambda: conditions(link(api)).get("Promoted"))
    assert waiting["status"] == "False" and waiting["reason"] == "NotLinked" and "invoices" in waiting["message"]
    assert brokers.promoted == set()
