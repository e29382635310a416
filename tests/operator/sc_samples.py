"""StreamCluster specs shared by the tests: a range from minimal to everything set."""

from __future__ import annotations

import copy
from typing import Any

MINIMAL: dict[str, Any] = {"storage": {"bucket": "floe-data"}}

MINIO: dict[str, Any] = {
    "storage": {
        "bucket": "floe",
        "prefix": "dev",
        "endpoint": "http://minio.minio.svc:9000",
        "pathStyle": True,
        "credentialsSecretRef": {"name": "floe-s3"},
    },
    "config": {"flushIntervalMs": 25, "auto-create-topics": True, "retentionMs": "604800000"},
}

FULL: dict[str, Any] = {
    "image": "registry.example.com/floe:1.2.3",
    "imagePullPolicy": "Always",
    "imagePullSecrets": [{"name": "regcred"}],
    "brokers": {
        "replicas": 5,
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
        "terminationGracePeriodSeconds": 120,
        "podTemplate": {
            "labels": {"team": "streaming"},
            "annotations": {"example.com/owner": "team-streaming"},
            "nodeSelector": {"node.kubernetes.io/instance-type": "m6i.xlarge"},
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "floe"}},
                            },
                        }
                    ]
                }
            },
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}],
            "topologySpreadConstraints": [],
            "priorityClassName": "high-priority",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 2000, "fsGroup": 2000},
            "containerSecurityContext": {"readOnlyRootFilesystem": True},
        },
    },
    "storage": {
        "bucket": "prod.floe-data",
        "prefix": "clusters/eu",
        "endpoint": "https://rgw.example.com",
        "region": "eu-west-1",
        "pathStyle": True,
        "credentialsSecretRef": {
            "name": "rgw-keys",
            "accessKeyIdKey": "access",
            "secretAccessKeyKey": "secret",
        },
    },
    "listener": {"kafkaPort": 19092, "adminPort": 19644},
    "config": {
        "flushIntervalMs": 10,
        "flushBytes": 1048576,
        "sessionTimeoutMs": 30000,
        "autoCreateTopics": False,
        "defaultPartitions": 12,
        "retentionMs": 86400000,
        "retentionBytes": -1,
        "maxMessageBytes": 1048588,
        "logLevel": "debug",
    },
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 30,
        "targetCPUUtilizationPercentage": 60,
        "bytesInPerBroker": "50Mi",
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 30},
            "scaleDown": {
                "stabilizationWindowSeconds": 600,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
            },
        },
    },
    "rebalance": {
        "enabled": True,
        "intervalSeconds": 10,
        "window": "2m",
        "skewIntervals": 4,
        "metricsSelector": 'namespace="streaming"',
        "onScaleOut": True,
        "onScaleIn": True,
        "continuous": True,
        "maxSkewPercent": 10,
        "prometheusUrl": "http://prometheus.monitoring:9090",
    },
    "disruption": {"maxUnavailable": "25%"},
    "paused": False,
}

# Two listeners (plaintext SCRAM inside, TLS with SCRAM outside, mutual TLS) and ACLs.
SECURE: dict[str, Any] = {
    **MINIMAL,
    "listeners": [
        {"name": "internal", "port": 9092, "authentication": "scram-sha-512"},
        {"name": "external", "port": 9093, "tls": {"secretName": "demo-tls"}, "authentication": "scram-sha-256"},
        {"name": "mtls", "port": 9094, "tls": {"secretName": "demo-mtls"}, "authentication": "mtls"},
    ],
    "authorization": {"type": "simple", "superUsers": ["admin", "User:CN=ops"]},
}

VARIANTS: dict[str, dict[str, Any]] = {
    "secure": SECURE,
    "minimal": MINIMAL,
    "minio": MINIO,
    "full": FULL,
    "autoscaling-cpu-only": {**MINIMAL, "autoscaling": {"enabled": True}},
    "scaled-to-zero": {**MINIMAL, "brokers": {"replicas": 0}, "disruption": {"maxUnavailable": 0}},
    "paused": {**MINIO, "paused": True},
}


def cluster(spec: dict[str, Any], *, name: str = "demo", namespace: str = "streaming", **meta: Any) -> dict[str, Any]:
    """A StreamCluster object around ``spec`` (deep-copied, so tests may mutate it)."""
    return {
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "StreamCluster",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": copy.deepcopy(spec),
    }
