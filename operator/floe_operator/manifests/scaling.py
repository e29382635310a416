"""Builders for the HorizontalPodAutoscaler and the PodDisruptionBudget.

The HPA scales the broker Deployment directly (autoscaling/v2). Its default
behaviour is asymmetric on purpose: adding a broker is cheap and safe
(partitions move by metadata in well under a second), so scale up fast;
removing one drains it, so scale down one pod at a time after five minutes of
stable low load, which also keeps a load spike from flapping the cluster.
"""

from __future__ import annotations

from typing import Any

from floe_operator import spec as spec_
from floe_operator.manifests import naming
from floe_operator.manifests.broker import Manifest, metadata

DEFAULT_SCALE_UP: dict[str, Any] = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
        {"type": "Pods", "value": 4, "periodSeconds": 15},
    ],
}
DEFAULT_SCALE_DOWN: dict[str, Any] = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Min",
    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
}


def _rules(default: dict[str, Any], override: spec_.ScalingRules | None) -> dict[str, Any]:
    """Per-field override of one direction's defaults (unset fields keep the default)."""
    rules = dict(default)
    if override is not None:
        rules.update(override.model_dump(by_alias=True, exclude_none=True))
    return rules


def behavior(autoscaling: spec_.Autoscaling) -> dict[str, Any]:
    b = autoscaling.behavior or spec_.Behavior()
    return {
        "scaleUp": _rules(DEFAULT_SCALE_UP, b.scale_up),
        "scaleDown": _rules(DEFAULT_SCALE_DOWN, b.scale_down),
    }


def hpa(cluster: spec_.StreamCluster) -> Manifest:
    a = cluster.spec.autoscaling
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": a.target_cpu_utilization_percentage,
                },
            },
        }
    ]
    if a.bytes_in_per_broker is not None:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": a.bytes_in_metric},
                    "target": {"type": "AverageValue", "averageValue": a.bytes_in_per_broker},
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(cluster, naming.hpa(cluster)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": naming.deployment(cluster),
            },
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": metrics,
            "behavior": behavior(a),
        },
    }


def pdb(cluster: spec_.StreamCluster) -> Manifest:
    """Voluntary evictions (node drains) take brokers one at a time by default."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cluster, naming.pdb(cluster)),
        "spec": {
            "maxUnavailable": cluster.spec.disruption.max_unavailable,
            "selector": {"matchLabels": naming.selector_labels(cluster)},
        },
    }
