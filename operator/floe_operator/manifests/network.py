"""Builders for the two Services of a StreamCluster.

* The bootstrap Service is what clients are given: it load-balances the first
  Metadata request; afterwards clients talk to each broker's advertised pod
  IP directly, as Kafka clients do.
* The headless Service gives every broker pod a DNS record and a stable
  target for Prometheus service discovery; it publishes pods before they are
  ready so that brokers starting together can find each other.
"""

from __future__ import annotations

from floe_operator import spec as spec_
from floe_operator.manifests import naming
from floe_operator.manifests.broker import Manifest, metadata


def _ports(cluster: spec_.StreamCluster) -> list[dict[str, object]]:
    """One port per Kafka listener (named as the listener), plus the admin port."""
    return [
        *({"name": ln.name, "port": ln.port, "targetPort": ln.name, "protocol": "TCP"}
          for ln in cluster.spec.kafka_listeners()),
        {"name": "admin", "port": cluster.spec.listener.admin_port, "targetPort": "admin", "protocol": "TCP"},
    ]


def bootstrap_service(cluster: spec_.StreamCluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, naming.bootstrap_service(cluster)),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector_labels(cluster),
            "ports": _ports(cluster),
        },
    }


def headless_service(cluster: spec_.StreamCluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, naming.headless_service(cluster)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": naming.selector_labels(cluster),
            "ports": _ports(cluster),
        },
    }
