"""The operator (kopf + floe_operator.main) against the kmock Kubernetes emulator.

Each test plays the user (creating and editing StreamClusters and Secrets)
and, where needed, the Deployment controller or the HPA (reporting rollout
progress, changing replicas), and asserts on the objects the operator wrote
through the API.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sc_samples

from conftest import Api, eventually, running_operator

KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
DEPLOYMENTS = "apps/v1/deployments"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
CHILDREN = [
    ("v1/serviceaccounts", "demo-broker"),
    ("v1/configmaps", "demo-config"),
    ("v1/services", "demo-brokers"),
    ("v1/services", "demo-bootstrap"),
    (DEPLOYMENTS, "demo-broker"),
    ("policy/v1/poddisruptionbudgets", "demo-broker"),
]


def condition(api: Api, type_: str) -> dict[str, Any]:
    conditions = api.cluster().get("status", {}).get("conditions", [])
    found = [c for c in conditions if c["type"] == type_]
    assert found, f"no {type_} condition yet"
    return found[0]


def phase(api: Api) -> str | None:
    return api.cluster().get("status", {}).get("phase")


def deployment(api: Api) -> dict[str, Any]:
    obj = api.get(DEPLOYMENTS, "demo-broker")
    assert obj is not None
    return obj


def broker_container(api: Api) -> dict[str, Any]:
    return deployment(api)["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


async def hpa_scales(api: Api, replicas: int) -> None:
    """Play the HPA: scale the broker Deployment through its scale subresource."""
    await api.request(
        "PATCH",
        "/apis/apps/v1/namespaces/streaming/deployments/demo-broker/scale?fieldManager=kube-controller-manager",
        {"spec": {"replicas": replicas}},
    )


async def created(api: Api, spec: dict[str, Any] = sc_samples.MINIO) -> None:
    """A running cluster: Secret, StreamCluster, and every child object present."""
    await api.create_secret("floe-s3", KEYS)
    await api.create_cluster(spec)
    await eventually(lambda: all(api.get(r, n) for r, n in CHILDREN))
    await eventually(lambda: api.cluster().get("status", {}).get("observedGeneration") == 1)


async def test_create_builds_every_object_owned_and_reports_status(api: Api, operator: None) -> None:
    await created(api)
    for resource, name in CHILDREN:
        obj = api.get(resource, name)
        assert obj is not None
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "floe.dev/v1alpha1", "kind": "StreamCluster", "name": "demo",
            "uid": "uid-demo", "controller": True, "blockOwnerDeletion": True,
        }], resource  # fmt: skip
    assert api.get(HPAS, "demo-broker") is None
    assert "finalizers" not in api.cluster()["metadata"]  # deletion never waits on us

    status = api.cluster()["status"]
    assert status["phase"] == "Reconciling"
    assert status["selector"] == (
        "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=floe"
    )
    assert status["bootstrapServers"] == "demo-bootstrap.streaming.svc.cluster.local:9092"
    assert status["replicas"] == 3 and status["readyReplicas"] == 0
    for c in status["conditions"]:
        assert c["reason"] and "message" in c and c["lastTransitionTime"]
    assert condition(api, "Degraded")["status"] == "False"
    assert condition(api, "Ready")["status"] == "False"

    # The Deployment controller reports the rollout done: the cluster is Ready.
    await api.set_deployment_status("demo-broker", {
        "observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
        "availableReplicas": 3,
    })  # fmt: skip
    await eventually(lambda: phase(api) == "Running")
    assert condition(api, "Ready")["status"] == "True"
    assert condition(api, "Ready")["message"] == "3/3 brokers ready"
    assert condition(api, "Reconciling")["status"] == "False"
    assert api.cluster()["status"]["readyReplicas"] == 3


async def test_spec_change_patches_objects_and_rolls_brokers(api: Api, operator: None) -> None:
    await created(api)
    before = deployment(api)["spec"]["template"]["metadata"]["annotations"]["floe.dev/config-hash"]
    await api.patch_cluster({
        "brokers": {"resources": {"requests": {"cpu": "2", "memory": "4Gi"},
                                  "limits": {"memory": "8Gi"}}},
        "config": {"flushIntervalMs": 50, "auto-create-topics": None, "retentionMs": None},
    })  # fmt: skip
    await eventually(lambda: broker_container(api)["resources"]["limits"] == {"memory": "8Gi"})
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 2)
    data = api.get("v1/configmaps", "demo-config")["data"]  # type: ignore[index]
    assert data["FLOE_FLUSH_INTERVAL_MS"] == "50"
    assert "FLOE_AUTO_CREATE_TOPICS" not in data  # removed keys are removed, not left behind
    after = deployment(api)["spec"]["template"]["metadata"]["annotations"]["floe.dev/config-hash"]
    assert after != before  # a new pod template: the Deployment rolls the brokers
    assert broker_container(api)["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}


async def test_autoscaling_hands_replicas_to_the_hpa_and_back(api: Api, operator: None) -> None:
    await created(api)
    await api.patch_cluster({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}})
    hpa = await eventually(lambda: api.get(HPAS, "demo-broker"))
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["scaleTargetRef"]["name"] == "demo-broker"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "uid-demo"

    # The HPA scales the Deployment to 5; the operator must not fight it,
    # even while it applies other changes to the same Deployment.
    await hpa_scales(api, 5)
    await api.patch_cluster({"autoscaling": {"maxReplicas": 8}, "config": {"flushIntervalMs": 5}})
    await eventually(lambda: api.get(HPAS, "demo-broker")["spec"]["maxReplicas"] == 8)  # type: ignore[index]
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 3)
    assert api.get("v1/configmaps", "demo-config")["data"]["FLOE_FLUSH_INTERVAL_MS"] == "5"  # type: ignore[index]
    assert deployment(api)["spec"]["replicas"] == 5
    assert api.cluster()["status"]["autoscaling"] is True

    # Autoscaling off: the HPA goes away and spec.brokers.replicas rules again.
    await api.patch_cluster({"autoscaling": {"enabled": False}})
    await eventually(lambda: api.get(HPAS, "demo-broker") is None)
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 4)
    assert deployment(api)["spec"]["replicas"] == 3
    assert api.cluster()["status"]["autoscaling"] is False


async def test_enabling_autoscaling_keeps_the_replica_count_until_the_hpa_scales(api: Api, operator: None) -> None:
    await created(api)
    await api.patch_cluster({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}})
    await eventually(lambda: api.get(HPAS, "demo-broker"))
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 2)
    assert deployment(api)["spec"]["replicas"] == 3  # not dropped (to the default of 1) on the switch

    # Later reconciles leave the count alone too, and the HPA's first scale takes it.
    await api.patch_cluster({"config": {"flushIntervalMs": 5}})
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 3)
    assert deployment(api)["spec"]["replicas"] == 3
    await hpa_scales(api, 4)
    await api.patch_cluster({"config": {"flushIntervalMs": 6}})
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 4)
    assert deployment(api)["spec"]["replicas"] == 4


async def test_spec_the_schema_accepts_but_cannot_work_is_degraded(api: Api, operator: None) -> None:
    bad = {**sc_samples.MINIMAL, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}
    await api.create_cluster(bad)
    await eventually(lambda: phase(api) == "Degraded")
    degraded = condition(api, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert "minReplicas (5) is greater than maxReplicas (2)" in degraded["message"]
    events = await eventually(lambda: [e for e in api.events() if e.get("reason") == "InvalidSpec"])
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "demo"
    assert "minReplicas (5)" in events[0]["message"]
    # Nothing half-applied.
    assert all(api.get(r, n) is None for r, n in CHILDREN)
    assert api.get(HPAS, "demo-broker") is None

    # Fixing the spec recovers.
    await api.patch_cluster({"autoscaling": {"minReplicas": 2}})
    await eventually(lambda: all(api.get(r, n) for r, n in CHILDREN))
    await eventually(lambda: condition(api, "Degraded")["status"] == "False")
    assert api.get(HPAS, "demo-broker") is not None


async def test_missing_secret_is_degraded_until_it_appears(api: Api, operator: None) -> None:
    await api.create_cluster(sc_samples.MINIO)
    await eventually(lambda: phase(api) == "Degraded")
    degraded = condition(api, "Degraded")
    assert degraded["reason"] == "MissingSecret"
    assert "Secret streaming/floe-s3" in degraded["message"]
    assert "AWS_ACCESS_KEY_ID" in degraded["message"]
    await eventually(lambda: [e for e in api.events() if e.get("reason") == "MissingSecret"])
    assert all(api.get(r, n) is None for r, n in CHILDREN)

    # A Secret without the expected key is still not enough, and says which key.
    await api.create_secret("floe-s3", ["AWS_ACCESS_KEY_ID"])
    await eventually(lambda: "no key AWS_SECRET_ACCESS_KEY" in condition(api, "Degraded")["message"])
    assert all(api.get(r, n) is None for r, n in CHILDREN)

    await api.request(
        "PATCH", "/api/v1/namespaces/streaming/secrets/floe-s3", {"data": {"AWS_SECRET_ACCESS_KEY": "c2VjcmV0"}}
    )
    await eventually(lambda: all(api.get(r, n) for r, n in CHILDREN), within=15)
    await eventually(lambda: condition(api, "Degraded")["status"] == "False")
    assert phase(api) == "Reconciling"


async def test_paused_cluster_is_left_alone(api: Api, operator: None) -> None:
    await created(api)
    writes = (api.writes(DEPLOYMENTS), api.writes("v1/configmaps"))
    await api.patch_cluster({"paused": True, "brokers": {"replicas": 7}, "config": {"flushIntervalMs": 1}})
    await eventually(lambda: phase(api) == "Paused")
    assert condition(api, "Reconciling")["reason"] == "Paused"
    assert (api.writes(DEPLOYMENTS), api.writes("v1/configmaps")) == writes
    assert deployment(api)["spec"]["replicas"] == 3

    await api.patch_cluster({"paused": False})
    await eventually(lambda: deployment(api)["spec"]["replicas"] == 7)
    assert api.get("v1/configmaps", "demo-config")["data"]["FLOE_FLUSH_INTERVAL_MS"] == "1"  # type: ignore[index]
    await eventually(lambda: phase(api) == "Reconciling")


async def test_restart_resumes_without_rewriting_anything(api: Api, tmp_path: Any) -> None:
    async with running_operator(api, tmp_path):
        await created(api)
    versions = [api.get(r, n)["metadata"]["resourceVersion"] for r, n in CHILDREN]  # type: ignore[index]
    applies = len(api.applies())
    status_writes = api.writes("floe.dev/v1alpha1/streamclusters")
    async with running_operator(api, tmp_path):
        # The resume handler re-applies everything, which changes nothing,
        # and reports status (a write to the StreamCluster) when done.
        await eventually(lambda: api.writes("floe.dev/v1alpha1/streamclusters") > status_writes)
    assert len(api.applies()) >= applies + len(CHILDREN)
    assert [api.get(r, n)["metadata"]["resourceVersion"] for r, n in CHILDREN] == versions  # type: ignore[index]
    assert api.get(HPAS, "demo-broker") is None


async def test_handler_outcomes_are_normal_events(api: Api, operator: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf.objects")  # `floe operator run` logs at info by default
    await created(api)
    events = await eventually(lambda: [e for e in api.events() if e.get("reason") == "Reconciled"])
    assert events[0]["type"] == "Normal"
    assert events[0]["involvedObject"]["name"] == "demo"
    assert "every object matches generation 1" in events[0]["message"]
    # kopf's own report of the handler, which it posts only when told to post its log lines.
    assert await eventually(lambda: [
        e for e in api.events()
        if e["type"] == "Normal" and "Handler 'reconcile_cluster' succeeded" in e.get("message", "")
    ])  # fmt: skip


async def test_kubectl_scale_on_an_autoscaled_cluster_warns_that_the_hpa_owns_the_count(
    api: Api, operator: None
) -> None:
    await created(api, {**sc_samples.MINIO, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}})
    await eventually(lambda: api.get(HPAS, "demo-broker"))
    # kubectl scale writes spec.brokers.replicas through the scale subresource.
    await api.patch_cluster({"brokers": {"replicas": 9}})
    await eventually(lambda: api.cluster()["status"].get("observedGeneration") == 2)
    ignored = await eventually(lambda: condition(api, "ScaleIgnored"))
    assert ignored["status"] == "True" and ignored["reason"] == "AutoscalingEnabled"
    assert "spec.brokers.replicas=9" in ignored["message"]
    assert "HorizontalPodAutoscaler demo-broker" in ignored["message"]
    assert "spec.autoscaling.enabled to false" in ignored["message"]
    warnings = await eventually(lambda: [e for e in api.events() if e.get("reason") == "ScaleIgnored"])
    assert warnings[0]["type"] == "Warning" and "spec.brokers.replicas=9" in warnings[0]["message"]
    assert deployment(api)["spec"]["replicas"] == 3  # the HPA's count, untouched

    # Autoscaling off: the count is honoured and the condition says so.
    await api.patch_cluster({"autoscaling": {"enabled": False}})
    await eventually(lambda: deployment(api)["spec"]["replicas"] == 9)
    await eventually(lambda: condition(api, "ScaleIgnored")["status"] == "False")
    assert condition(api, "ScaleIgnored")["reason"] == "AutoscalingDisabled"


async def test_a_degraded_cluster_posts_each_warning_once(api: Api, operator: None) -> None:
    await api.create_cluster(sc_samples.MINIO)
    await eventually(lambda: [e for e in api.events() if e.get("reason") == "MissingSecret"])
    # The handler's log line says the same; it must not become a second Warning.
    assert not [e for e in api.events() if e["type"] == "Warning" and e.get("message", "").startswith("Degraded (")]
