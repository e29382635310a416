"""Names and labels of everything a StreamCluster becomes.

One place decides them, so the builders, the reconciler (which looks objects
up by name) and the status (selector, bootstrap address) cannot disagree.
The selector labels are immutable on a Deployment: never change them.
"""

from __future__ import annotations

from floe_operator import spec as spec_

MANAGED_BY = "floe-operator"
CLUSTER_LABEL = "floe.dev/cluster"
CONFIG_HASH_ANNOTATION = "floe.dev/config-hash"


def service_account(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-broker"


def config_map(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-config"


def deployment(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-broker"


def headless_service(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-brokers"


def bootstrap_service(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-bootstrap"


def cluster_secret(cluster: spec_.StreamCluster) -> str:
    """The Secret with the cluster secret, the admin token and the operator's own SCRAM user."""
    return f"{cluster.name}-cluster-secrets"


def hpa(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-broker"


def pdb(cluster: spec_.StreamCluster) -> str:
    return f"{cluster.name}-broker"


def selector_labels(cluster: spec_.StreamCluster) -> dict[str, str]:
    """Labels that select this cluster's broker pods (Deployment, Services, PDB, HPA)."""
    return {
        "app.kubernetes.io/name": "floe",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/component": "broker",
    }


def labels(cluster: spec_.StreamCluster) -> dict[str, str]:
    """Labels on every object the operator creates for ``cluster``."""
    return {
        **selector_labels(cluster),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        CLUSTER_LABEL: cluster.name,
    }


def selector(cluster: spec_.StreamCluster) -> str:
    """The label selector as a string, for ``status.selector`` (scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(cluster).items()))


def bootstrap_servers(cluster: spec_.StreamCluster, cluster_domain: str) -> str:
    """The address Kafka clients start from: the bootstrap Service's FQDN and port."""
    host = f"{bootstrap_service(cluster)}.{cluster.namespace}.svc.{cluster_domain}"
    return f"{host}:{cluster.spec.kafka_listeners()[0].port}"


def bootstrap_for(cluster: spec_.StreamCluster, listener: spec_.KafkaListener, cluster_domain: str) -> str:
    """The bootstrap address of one listener (what a StreamUser's client configuration names)."""
    return f"{bootstrap_service(cluster)}.{cluster.namespace}.svc.{cluster_domain}:{listener.port}"
