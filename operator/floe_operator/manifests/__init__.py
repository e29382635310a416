"""Pure builders: a StreamCluster spec in, Kubernetes manifests (dicts) out.

Nothing here imports kopf, a Kubernetes client or asyncio; the reconciler
applies what these return and ``floe operator render`` prints it. Keeping the
decisions here makes every one of them testable without a cluster.
"""

from __future__ import annotations

from floe_operator import config as config_
from floe_operator import spec as spec_
from floe_operator.manifests import broker, naming, network, scaling
from floe_operator.manifests.broker import Manifest

__all__ = ["Manifest", "build_all", "broker", "naming", "network", "scaling"]


def build_all(
    cluster: spec_.StreamCluster, config: config_.OperatorConfig, *, replicas: int | None = None
) -> list[Manifest]:
    """Every object the cluster needs, in apply order (dependencies first).

    The HPA is included only when autoscaling is enabled; the reconciler
    deletes a leftover one otherwise.
    """
    objs = [
        broker.service_account(cluster),
        broker.config_map(cluster),
        network.headless_service(cluster),
        network.bootstrap_service(cluster),
        broker.deployment(cluster, config, replicas=replicas),
        scaling.pdb(cluster),
    ]
    if cluster.spec.autoscaling.enabled:
        objs.append(scaling.hpa(cluster))
    return objs
