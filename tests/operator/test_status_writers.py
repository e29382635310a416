"""The StreamCluster's status writers against the kmock emulator, interleaved on purpose.

The Deployment watcher and the reconciler both write ``.status``. Here the
watcher reads the StreamCluster while it is still ``Degraded`` (the
credentials Secret missing), and, before it writes, the reconciler reports
that the Secret appeared (``Degraded`` false, a bootstrap address). What the
user must see afterwards is the reconciler's news, not the watcher's stale
copy put back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
import sc_samples

from conftest import NAMESPACE, Api
from floe_operator import config as config_
from floe_operator import kube as kube_
from floe_operator import spec as spec_
from floe_operator.manifests import naming
from floe_operator.reconcile import cluster as cluster_
from floe_operator.reconcile import status as status_
from floe_operator.reconcile import status_update

CONFIG = config_.OperatorConfig(broker_image="floe:test")
AT = "2026-01-01T00:00:00Z"


class RacingKube(kube_.KubeClient):
    """A client whose first read of the StreamCluster is overtaken by another writer.

    ``overtake`` runs right after that read returned, before its caller can
    write: exactly the window a second writer (kopf's own status patch) hit
    on a real API server.
    """

    overtake: Any = None

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = await super().get(api_version, kind, namespace, name)
        if kind == spec_.KIND and self.overtake is not None:
            overtake, self.overtake = self.overtake, None
            await overtake()
        return found


@pytest.fixture
async def kube(api: Api) -> AsyncIterator[RacingKube]:
    client = RacingKube(kubernetes.client.Configuration(host=str(api.k8s.url).rstrip("/")))
    yield client
    await client.close()


def deployment() -> dict[str, Any]:
    """A broker Deployment the controller has not reported on yet."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "demo-broker",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": naming.MANAGED_BY, naming.CLUSTER_LABEL: "demo"},
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "x"}}, "template": {"spec": {"containers": []}}},
    }


async def degraded_cluster(api: Api) -> dict[str, Any]:
    created = await api.create_cluster(sc_samples.MINIO)
    degraded = status_.degraded(
        spec_.StreamClusterStatus(),
        reason="MissingSecret",
        message="Secret streaming/floe-s3 (spec.storage.credentialsSecretRef) does not exist",
        at=AT,
        generation=1,
    )
    path = f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamclusters/demo/status"
    await api.request("PATCH", path, {"status": degraded.to_patch()})
    return created


async def reconciler_reports_recovery(api: Api, kube: kube_.KubeClient) -> None:
    """What the reconciler writes once the Secret exists and every object is applied."""
    cluster = spec_.StreamCluster.from_body(api.cluster())

    async def reconciled(live: dict[str, Any]) -> dict[str, Any]:
        status = status_.reconciled(
            status_.parse(live.get("status")), cluster=cluster, config=CONFIG, deployment=None, at=AT
        )
        return status.to_patch()

    await status_update.update(kube, NAMESPACE, "demo", reconciled)


async def test_a_stale_watcher_write_does_not_undo_the_recovery(api: Api, kube: RacingKube) -> None:
    await degraded_cluster(api)
    await api.request("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", deployment())

    async def reconciler() -> None:
        await reconciler_reports_recovery(api, kube)

    kube.overtake = reconciler
    await cluster_.refresh_from_deployment(
        deployment=deployment(), kube=kube, logger=logging.getLogger("test")  # type: ignore[arg-type]
    )

    status = api.cluster()["status"]
    assert status["phase"] != "Degraded", status
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False"
    assert status["bootstrapServers"] == "demo-bootstrap.streaming.svc.cluster.local:9092"


async def test_a_status_write_retries_on_conflict_and_recomputes(api: Api, kube: RacingKube) -> None:
    await degraded_cluster(api)
    seen: list[str] = []

    async def compute(live: dict[str, Any]) -> dict[str, Any]:
        seen.append(live["status"]["phase"])
        return {"replicas": len(seen)}

    async def other_writer() -> None:
        path = f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamclusters/demo/status"
        await api.request("PATCH", path, {"status": {"phase": "Reconciling"}})

    kube.overtake = other_writer
    await status_update.update(kube, NAMESPACE, "demo", compute)
    assert seen == ["Degraded", "Reconciling"]  # the first computation was refused, the second saw the news
    assert api.cluster()["status"]["replicas"] == 2
    assert api.cluster()["status"]["phase"] == "Reconciling"
