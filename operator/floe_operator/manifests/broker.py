"""Builders for the broker workload: ServiceAccount, ConfigMap and Deployment.

Pure functions of (StreamCluster, OperatorConfig): no I/O, no kopf, no
Kubernetes client. They return plain dicts ready to send to the API server,
so ``floe operator render`` and the reconciler produce identical objects.

The broker contract they encode:

* settings reach the broker as ``FLOE_*`` env vars from the ConfigMap
  (``envFrom``); a hash of that data is a pod-template annotation, so a
  config change rolls the brokers (envFrom alone would not);
* the advertised address is the pod IP (downward API) and the Kafka port;
* storage credentials come from the Secret named by
  ``spec.storage.credentialsSecretRef`` (absent: the pod's cloud identity);
* ``/readyz`` gates traffic, ``/healthz`` restarts a wedged broker;
* stopping drains: the preStop hook asks ``POST /v1/drain`` and SIGTERM does
  the same, inside ``terminationGracePeriodSeconds``;
* no data volumes: all state is in the bucket. The only volumes are Secrets:
  the cluster Secret (cluster secret, admin token, the operator's bootstrap
  user) and each listener's TLS Secret, read-only (``manifests/security.py``),
  and the cluster links' source credentials (``manifests/links.py``);
* ``spec.listeners`` become Kafka-style listener settings
  (``FLOE_LISTENERS``, ``FLOE_ADVERTISED_LISTENERS``,
  ``FLOE_LISTENER_SECURITY_PROTOCOL_MAP``, ``FLOE_SASL_ENABLED_MECHANISMS``,
  ``FLOE_SSL_DIR_<NAME>``, ``FLOE_SSL_CLIENT_AUTH_<NAME>``), one container
  port each; without them the broker has one plaintext listener as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from floe_operator import config as config_
from floe_operator import spec as spec_
from floe_operator.manifests import links, naming, security

Manifest = dict[str, Any]

DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "2Gi"},
}
# Drop everything the broker does not need; it only opens TCP ports > 1024
# by default and talks to S3.
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,  # the Secret volumes' files are group-readable by the broker, not world-readable
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def metadata(cluster: spec_.StreamCluster, name: str, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": cluster.namespace,
        "labels": naming.labels(cluster),
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def image(cluster: spec_.StreamCluster, config: config_.OperatorConfig) -> str:
    return cluster.spec.image or config.broker_image


def service_account(cluster: spec_.StreamCluster) -> Manifest:
    """Brokers never call the Kubernetes API, so the token is not mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(cluster, naming.service_account(cluster)),
        "automountServiceAccountToken": False,
    }


def broker_env(cluster: spec_.StreamCluster) -> dict[str, str]:
    """Every broker flag the ConfigMap carries, as ``FLOE_*`` variables.

    Operator-managed flags first; ``spec.config`` cannot override them (the
    spec rejects reserved keys), but may override ``FLOE_LOG_FORMAT``.
    """
    s = cluster.spec
    env = {
        "FLOE_CLUSTER": cluster.name,
        "FLOE_STORAGE": s.storage.url,
        "FLOE_S3_REGION": s.storage.region,
        "FLOE_S3_PATH_STYLE": "true" if s.storage.path_style else "false",
        "FLOE_HTTP": f"0.0.0.0:{s.listener.admin_port}",
        "FLOE_LOG_FORMAT": "json",
    }
    if not s.listeners:
        env["FLOE_LISTEN"] = f"0.0.0.0:{s.listener.kafka_port}"
    env.update(security.security_env(cluster))
    if s.storage.endpoint:
        env["FLOE_S3_ENDPOINT"] = s.storage.endpoint
    env.update(s.config_env())
    return dict(sorted(env.items()))


def config_map(cluster: spec_.StreamCluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cluster, naming.config_map(cluster)),
        "data": broker_env(cluster),
    }


def config_hash(cluster: spec_.StreamCluster) -> str:
    """A short digest of the ConfigMap data: changing it rolls the pods."""
    blob = json.dumps(broker_env(cluster), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _container_env(cluster: spec_.StreamCluster) -> list[dict[str, Any]]:
    s = cluster.spec
    env: list[dict[str, Any]] = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
    ]
    # $(POD_IP) is expanded by the kubelet because POD_IP is defined above.
    if s.listeners:
        env.append({"name": "FLOE_ADVERTISED_LISTENERS", "value": security.advertised_listeners(cluster)})
    else:
        env.append({"name": "FLOE_ADVERTISE", "value": f"$(POD_IP):{s.listener.kafka_port}"})
    ref = s.storage.credentials_secret_ref
    if ref is not None:
        for var, key in (
            ("AWS_ACCESS_KEY_ID", ref.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key),
        ):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key}}})
    return env


def _drain_command(cluster: spec_.StreamCluster) -> list[str]:
    """preStop: ask the broker to drain, and never block the shutdown on failure.

    The kubelet sends SIGTERM once the hook returns (or the grace period runs
    out); the broker drains on SIGTERM as well, so a failed hook loses nothing.
    The admin token is read from the mounted Secret, never put in the command.
    """
    port = cluster.spec.listener.admin_port
    timeout = max(cluster.spec.brokers.termination_grace_period_seconds - 10, 5)
    token_file = f"{security.SECRETS_DIR}/{security.ADMIN_TOKEN_KEY}"
    script = (
        "import urllib.request as r; "
        f"t = open('{token_file}').read().strip(); "
        f"r.urlopen(r.Request('http://127.0.0.1:{port}/v1/drain', method='POST', "
        "headers={'Authorization': 'Bearer ' + t}), "
        f"timeout={timeout})"
    )
    return ["sh", "-c", f'python3 -c "{script}" || true']


def _resources(cluster: spec_.StreamCluster) -> dict[str, Any]:
    res = cluster.spec.brokers.resources
    if res is None:
        return json.loads(json.dumps(DEFAULT_RESOURCES))
    out: dict[str, Any] = {}
    if res.requests:
        out["requests"] = dict(res.requests)
    if res.limits:
        out["limits"] = dict(res.limits)
    return out


def _topology_spread(cluster: spec_.StreamCluster) -> list[dict[str, Any]]:
    tmpl = cluster.spec.brokers.pod_template
    if tmpl.topology_spread_constraints is not None:
        return list(tmpl.topology_spread_constraints)
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": naming.selector_labels(cluster)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def deployment(
    cluster: spec_.StreamCluster, config: config_.OperatorConfig, *, replicas: int | None = None
) -> Manifest:
    """The broker Deployment.

    ``replicas`` defaults to ``spec.brokers.replicas`` (clamped into the
    autoscaling bounds when autoscaling is on: the HPA starts from there).
    While the HPA owns the count the reconciler leaves it out of what it
    applies, so the HPA's value stays.
    """
    s = cluster.spec
    b = s.brokers
    tmpl = b.pod_template
    if replicas is None:
        replicas = b.replicas
        if s.autoscaling.enabled:
            replicas = min(max(replicas, s.autoscaling.min_replicas), s.autoscaling.max_replicas)
    admin = s.listener.admin_port
    pod_annotations = {
        **tmpl.annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(admin),
        "prometheus.io/path": "/metrics",
        naming.CONFIG_HASH_ANNOTATION: config_hash(cluster),
    }
    container: dict[str, Any] = {
        "name": "broker",
        "image": image(cluster, config),
        "imagePullPolicy": s.image_pull_policy,
        "command": ["floe"],
        "args": ["broker"],
        "ports": [
            *({"name": ln.name, "containerPort": ln.port, "protocol": "TCP"} for ln in s.kafka_listeners()),
            {"name": "admin", "containerPort": admin, "protocol": "TCP"},
        ],
        "env": _container_env(cluster),
        "envFrom": [{"configMapRef": {"name": naming.config_map(cluster)}}],
        "volumeMounts": security.volume_mounts(cluster) + links.volume_mounts(cluster),
        "resources": _resources(cluster),
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "admin"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "admin"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "admin"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "lifecycle": {"preStop": {"exec": {"command": _drain_command(cluster)}}},
        "securityContext": tmpl.container_security_context
        if tmpl.container_security_context is not None
        else dict(DEFAULT_CONTAINER_SECURITY_CONTEXT),
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": naming.service_account(cluster),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": b.termination_grace_period_seconds,
        "securityContext": tmpl.security_context
        if tmpl.security_context is not None
        else dict(DEFAULT_POD_SECURITY_CONTEXT),
        "containers": [container],
        "volumes": security.volumes(cluster) + links.volumes(cluster),
    }
    if s.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": r.name} for r in s.image_pull_secrets]
    if tmpl.node_selector:
        pod_spec["nodeSelector"] = dict(tmpl.node_selector)
    if tmpl.affinity:
        pod_spec["affinity"] = tmpl.affinity
    if tmpl.tolerations:
        pod_spec["tolerations"] = list(tmpl.tolerations)
    spread = _topology_spread(cluster)
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    if tmpl.priority_class_name:
        pod_spec["priorityClassName"] = tmpl.priority_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cluster, naming.deployment(cluster)),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": naming.selector_labels(cluster)},
            # Start the new broker before stopping an old one: the old one
            # drains its partitions to the survivors, never to nobody.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {**tmpl.labels, **naming.labels(cluster)},
                    "annotations": pod_annotations,
                },
                "spec": pod_spec,
            },
        },
    }
