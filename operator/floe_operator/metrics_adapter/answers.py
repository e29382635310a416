"""What the metrics APIs answer, from Prometheus' instant vectors (pure, no I/O).

Each served metric is one PromQL expression summed ``by (pod)`` over the
pods of one namespace, selected by name (the pods the HPA's label selector
matched, which the server lists from the API server). The API objects are
the ``custom.metrics.k8s.io/v1beta2`` ``MetricValueList`` and the
``metrics.k8s.io/v1beta1`` ``PodMetricsList``, with quantities in milli-units
so a rate of a few bytes/s or a few millicores is not rounded away.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CUSTOM_GROUP = "custom.metrics.k8s.io"
CUSTOM_VERSION = "v1beta2"
RESOURCE_GROUP = "metrics.k8s.io"
RESOURCE_VERSION = "v1beta1"

# Pods metrics served through the custom metrics API: name -> counter it is the rate of.
RATES: dict[str, str] = {
    "floe_broker_bytes_in_per_second": "floe_bytes_in_total",
    "floe_broker_bytes_out_per_second": "floe_bytes_out_total",
    "floe_broker_records_in_per_second": "floe_records_in_total",
    "floe_broker_records_out_per_second": "floe_records_out_total",
}

_DURATION = re.compile(r"^([0-9]+)(s|m|h)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


class UnknownMetric(ValueError):
    """A metric name this adapter does not serve (the API answers 404)."""


def window_seconds(window: str) -> int:
    """``30s``/``2m``/``1h`` -> seconds; refuses anything else (it goes into PromQL verbatim)."""
    m = _DURATION.match(window)
    if not m:
        raise ValueError(f"rate window {window!r} is not a PromQL duration like 30s, 2m or 1h")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def _pods_matcher(namespace: str, pods: Sequence[str]) -> str:
    # Pod names are DNS labels ([a-z0-9-.]), so they need no regex escaping.
    return f'namespace="{namespace}",pod=~"{"|".join(sorted(pods))}"'


def custom_query(metric: str, namespace: str, pods: Sequence[str], *, window: str) -> str:
    if metric not in RATES:
        raise UnknownMetric(f"metric {metric} is not served (served: {', '.join(sorted(RATES))})")
    return f"sum by (pod) (rate({RATES[metric]}{{{_pods_matcher(namespace, pods)}}}[{window}]))"


def cpu_query(namespace: str, pods: Sequence[str], *, window: str) -> str:
    return f"sum by (pod) (rate(process_cpu_seconds_total{{{_pods_matcher(namespace, pods)}}}[{window}]))"


def memory_query(namespace: str, pods: Sequence[str]) -> str:
    return f"sum by (pod) (process_resident_memory_bytes{{{_pods_matcher(namespace, pods)}}})"


def by_pod(answer: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """An instant vector keyed by its ``pod`` label; NaN and negative values (a counter reset) read as 0."""
    out: dict[str, float] = {}
    for sample in answer:
        pod = (sample.get("metric") or {}).get("pod")
        if not pod:
            continue
        try:
            value = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        out[str(pod)] = value if math.isfinite(value) and value > 0 else 0.0
    return out


def milli(value: float) -> str:
    """A Kubernetes quantity in milli-units (``1536.5`` -> ``1536500m``)."""
    return f"{round(value * 1000)}m"


def metric_value_list(
    metric: str, namespace: str, values: Mapping[str, float], *, timestamp: str, window: int
) -> dict[str, Any]:
    return {
        "kind": "MetricValueList",
        "apiVersion": f"{CUSTOM_GROUP}/{CUSTOM_VERSION}",
        "metadata": {},
        "items": [
            {
                "describedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "/v1"},
                "metric": {"name": metric},
                "timestamp": timestamp,
                "windowSeconds": window,
                "value": milli(value),
            }
            for pod, value in sorted(values.items())
        ],
    }


def pod_metrics_list(
    namespace: str,
    pods: Mapping[str, str],
    cpu: Mapping[str, float],
    memory: Mapping[str, float],
    *,
    timestamp: str,
    window: int,
) -> dict[str, Any]:
    """PodMetrics for the pods Prometheus has CPU for; ``pods`` maps each pod to its first container.

    A broker pod runs one process, so its whole usage is that container's;
    a pod Prometheus has not scraped yet is left out, as metrics-server does,
    and the HPA treats it as missing rather than idle.
    """
    items = []
    for pod, container in sorted(pods.items()):
        if pod not in cpu:
            continue
        items.append(
            {
                "metadata": {"name": pod, "namespace": namespace},
                "timestamp": timestamp,
                "window": f"{window}s",
                "containers": [
                    {"name": container, "usage": {"cpu": milli(cpu[pod]), "memory": str(round(memory.get(pod, 0.0)))}}
                ],
            }
        )
    return {"kind": "PodMetricsList", "apiVersion": f"{RESOURCE_GROUP}/{RESOURCE_VERSION}", "metadata": {},
            "items": items}  # fmt: skip


def custom_resources() -> dict[str, Any]:
    """The discovery document of the custom metrics API: one ``pods/<metric>`` resource per metric."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{CUSTOM_GROUP}/{CUSTOM_VERSION}",
        "resources": [
            {"name": f"pods/{name}", "singularName": "", "namespaced": True, "kind": "MetricValueList",
             "verbs": ["get"]}
            for name in sorted(RATES)
        ],
    }  # fmt: skip


def resource_resources() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{RESOURCE_GROUP}/{RESOURCE_VERSION}",
        "resources": [
            {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}
        ],
    }


def group_list() -> dict[str, Any]:
    groups = []
    for group, version in ((CUSTOM_GROUP, CUSTOM_VERSION), (RESOURCE_GROUP, RESOURCE_VERSION)):
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``metav1.Status`` failure, what kubectl and the HPA print."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """The pods one request is about: their names and each one's first container."""

    namespace: str
    containers: dict[str, str]

    @classmethod
    def from_pods(cls, namespace: str, pods: Sequence[Mapping[str, Any]]) -> Selection:
        containers: dict[str, str] = {}
        for pod in pods:
            meta = pod.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            spec_containers = (pod.get("spec") or {}).get("containers") or [{}]
            containers[str(meta.get("name"))] = str(spec_containers[0].get("name", ""))
        return cls(namespace, containers)
