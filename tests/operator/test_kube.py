"""KubeClient against the kmock emulator: server-side apply and the plain verbs.

What a user of the cluster would see after each apply: the objects exist and
say what the operator built, an unchanged apply writes nothing, fields the
operator stopped setting are gone, and fields other managers set stay.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
import sc_samples
import server_side_apply

from conftest import NAMESPACE, Api
from floe_operator import config as config_
from floe_operator import kube as kube_
from floe_operator import manifests
from floe_operator import spec as spec_

CONFIG = config_.OperatorConfig(broker_image="floe:test")
DEPLOYMENT = "/apis/apps/v1/namespaces/streaming/deployments/demo-broker"
RESOURCES = {
    "ServiceAccount": "v1/serviceaccounts",
    "ConfigMap": "v1/configmaps",
    "Service": "v1/services",
    "Deployment": "apps/v1/deployments",
    "PodDisruptionBudget": "policy/v1/poddisruptionbudgets",
    "HorizontalPodAutoscaler": "autoscaling/v2/horizontalpodautoscalers",
}


@pytest.fixture
async def kube(api: Api) -> AsyncIterator[kube_.KubeClient]:
    configuration = kubernetes.client.Configuration(host=str(api.k8s.url).rstrip("/"))
    client = kube_.KubeClient(configuration)
    yield client
    await client.close()


def build(spec: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = spec_.StreamCluster.from_body(sc_samples.cluster(spec, namespace=NAMESPACE))
    return manifests.build_all(cluster, CONFIG)


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind]
    return obj


def live(api: Api, obj: dict[str, Any]) -> dict[str, Any]:
    found = api.get(RESOURCES[obj["kind"]], obj["metadata"]["name"])
    assert found is not None, obj["metadata"]["name"]
    return found


def body(obj: dict[str, Any]) -> dict[str, Any]:
    """What the builder decides, without the server's bookkeeping."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "generation", "managedFields")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


async def test_apply_creates_each_object(api: Api, kube: kube_.KubeClient) -> None:
    objs = build(sc_samples.FULL)
    assert {o["kind"] for o in objs} == set(RESOURCES)
    for obj in objs:
        answer = await kube.apply(obj)
        assert body(answer) == obj
        assert body(live(api, obj)) == obj
        assert kube_.owns(answer, kube_.FIELD_MANAGER, ("metadata", "labels"))


async def test_second_apply_of_the_same_objects_writes_nothing(api: Api, kube: kube_.KubeClient) -> None:
    objs = build(sc_samples.FULL)
    for obj in objs:
        await kube.apply(obj)
    versions = [live(api, obj)["metadata"]["resourceVersion"] for obj in objs]
    for obj in build(sc_samples.FULL):
        await kube.apply(obj)
    assert [live(api, obj)["metadata"]["resourceVersion"] for obj in objs] == versions


async def test_fields_the_operator_stops_setting_are_removed(api: Api, kube: kube_.KubeClient) -> None:
    for obj in build(sc_samples.FULL):
        await kube.apply(obj)
    # Another manager (a person with kubectl) labels the ConfigMap.
    await api.request(
        "PATCH",
        "/api/v1/namespaces/streaming/configmaps/demo-config?fieldManager=kubectl-label",
        {"metadata": {"labels": {"team": "streaming"}}},
    )

    spec = copy.deepcopy(sc_samples.FULL)
    del spec["brokers"]["podTemplate"]["nodeSelector"]
    del spec["config"]["logLevel"]
    objs = build(spec)
    for obj in objs:
        await kube.apply(obj)

    pod_spec = live(api, by_kind(objs, "Deployment"))["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod_spec
    assert pod_spec["priorityClassName"] == "high-priority"  # still set: still applied
    config_map = live(api, by_kind(objs, "ConfigMap"))
    assert "FLOE_LOG_LEVEL" not in config_map["data"]
    assert config_map["data"] == by_kind(objs, "ConfigMap")["data"]
    assert config_map["metadata"]["labels"]["team"] == "streaming"  # not ours: left alone


async def test_replicas_another_manager_owns_survive_an_apply_without_them(api: Api, kube: kube_.KubeClient) -> None:
    deployment = by_kind(build(sc_samples.MINIMAL), "Deployment")
    await kube.apply(deployment)
    # The HPA takes the count over through the scale subresource.
    await api.request("PATCH", f"{DEPLOYMENT}/scale?fieldManager=kube-controller-manager", {"spec": {"replicas": 5}})
    assert not kube_.owns(live(api, deployment), kube_.FIELD_MANAGER, ("spec", "replicas"))

    without = copy.deepcopy(deployment)
    del without["spec"]["replicas"]
    without["spec"]["revisionHistoryLimit"] = 2
    await kube.apply(without)
    assert live(api, deployment)["spec"]["replicas"] == 5
    assert live(api, deployment)["spec"]["revisionHistoryLimit"] == 2

    # Taken back by an apply that sends them (autoscaling off).
    await kube.apply(deployment)
    assert live(api, deployment)["spec"]["replicas"] == 3
    assert kube_.owns(live(api, deployment), kube_.FIELD_MANAGER, ("spec", "replicas"))


async def test_apply_without_force_refuses_to_take_another_managers_field(api: Api, kube: kube_.KubeClient) -> None:
    deployment = by_kind(build(sc_samples.MINIMAL), "Deployment")
    await kube.apply(deployment)
    await api.request("PATCH", f"{DEPLOYMENT}/scale?fieldManager=kube-controller-manager", {"spec": {"replicas": 5}})
    with pytest.raises(kube_.KubeError) as refused:
        await kube.apply(deployment, field_manager="someone-else", force=False)
    assert refused.value.status == 409
    assert live(api, deployment)["spec"]["replicas"] == 5


async def test_objects_from_client_side_apply_are_taken_over(api: Api, kube: kube_.KubeClient) -> None:
    """Objects the operator's earlier versions wrote: every field is co-owned by that writer."""
    deployment = by_kind(build(sc_samples.FULL), "Deployment")
    legacy = copy.deepcopy(deployment)
    legacy["metadata"]["annotations"] = {kube_.LEGACY_LAST_APPLIED: "{}"}
    legacy["metadata"]["managedFields"] = [
        {
            "manager": "Python",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": server_side_apply.fields_v1(server_side_apply.leaves(legacy)),
        }
    ]
    await api.request("POST", "/apis/apps/v1/namespaces/streaming/deployments", legacy)

    await kube.apply(deployment)
    taken = live(api, deployment)
    assert kube_.LEGACY_LAST_APPLIED not in taken["metadata"].get("annotations", {})
    assert [e["manager"] for e in taken["metadata"]["managedFields"]] == [kube_.FIELD_MANAGER]

    del deployment["spec"]["template"]["spec"]["nodeSelector"]
    await kube.apply(deployment)
    assert "nodeSelector" not in live(api, deployment)["spec"]["template"]["spec"]


async def test_plain_verbs_find_their_paths_by_discovery(api: Api, kube: kube_.KubeClient) -> None:
    assert await kube.get("v1", "ConfigMap", NAMESPACE, "nothing-here") is None
    assert await kube.delete("v1", "ConfigMap", NAMESPACE, "nothing-here") is False
    config_map = by_kind(build(sc_samples.MINIMAL), "ConfigMap")
    created = await kube.create(config_map)
    assert created["data"] == config_map["data"]
    await kube.patch("v1", "ConfigMap", NAMESPACE, "demo-config", {"data": {"EXTRA": "1"}})
    listed = await kube.list_objects("v1", "ConfigMap", NAMESPACE, labels=config_map["metadata"]["labels"])
    assert [o["data"]["EXTRA"] for o in listed] == ["1"]
    assert await kube.delete("v1", "ConfigMap", NAMESPACE, "demo-config") is True
    assert await kube.get("v1", "ConfigMap", NAMESPACE, "demo-config") is None

    with pytest.raises(kube_.KubeError) as unknown:
        await kube.get("example.com/v1", "Gadget", NAMESPACE, "g")
    assert unknown.value.status == 404
