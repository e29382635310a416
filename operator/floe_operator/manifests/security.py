"""Builders for a StreamCluster's security: its Secret, the broker's listener and auth settings.

Pure, like every builder: the random values are made by the reconciler
(``reconcile/secrets.py``), which creates the Secret once; these functions
only shape it and say where the broker pod finds it.

The cluster Secret (``<name>-cluster-secrets``) holds

* ``cluster-secret``: what every ``/internal/v1`` call between brokers carries;
* ``admin-token``: the bearer token of the ``/v1`` admin API, used by the
  operator's rebalance loop and the preStop drain;
* ``operator-password`` and ``bootstrap-users``: the operator's own SCRAM
  user (:data:`OPERATOR_USER`, a super user), which the brokers create from
  the ``bootstrap-users`` file, so the operator can manage StreamUsers
  through the Kafka admin APIs without any credential being typed in.

It is mounted read-only at :data:`SECRETS_DIR`; the ConfigMap carries only
the file paths. TLS Secrets are mounted at ``/etc/floe/tls/<listener>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from floe_operator import spec as spec_
from floe_operator.manifests import naming

SECRETS_DIR = "/etc/floe/secrets"
TLS_DIR = "/etc/floe/tls"
SECRETS_VOLUME = "cluster-secrets"
CLUSTER_SECRET_KEY = "cluster-secret"
ADMIN_TOKEN_KEY = "admin-token"
OPERATOR_PASSWORD_KEY = "operator-password"
BOOTSTRAP_USERS_KEY = "bootstrap-users"
SECRET_KEYS = (CLUSTER_SECRET_KEY, ADMIN_TOKEN_KEY, OPERATOR_PASSWORD_KEY, BOOTSTRAP_USERS_KEY)
# The operator's own Kafka user: a super user it creates through bootstrap-users.
OPERATOR_USER = "floe-operator"


@dataclass(frozen=True)
class ClusterSecrets:
    """The values in the cluster Secret; ``repr`` never shows them."""

    cluster_secret: str = field(repr=False)
    admin_token: str = field(repr=False)
    operator_password: str = field(repr=False)


def bootstrap_users(operator_password: str) -> str:
    """The brokers' bootstrap-users file (``USER:PASSWORD`` lines): users created at start, with a
    credential for every SCRAM mechanism, if they do not exist yet."""
    return f"{OPERATOR_USER}:{operator_password}\n"


def cluster_secret(cluster: spec_.StreamCluster, values: ClusterSecrets) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": naming.cluster_secret(cluster), "namespace": cluster.namespace,
                     "labels": naming.labels(cluster)},
        "stringData": {
            CLUSTER_SECRET_KEY: values.cluster_secret,
            ADMIN_TOKEN_KEY: values.admin_token,
            OPERATOR_PASSWORD_KEY: values.operator_password,
            BOOTSTRAP_USERS_KEY: bootstrap_users(values.operator_password),
        },
    }


def _env_suffix(listener: spec_.KafkaListener) -> str:
    return listener.kafka_name


def tls_dir(listener: spec_.KafkaListener) -> str:
    return f"{TLS_DIR}/{listener.name}"


def security_env(cluster: spec_.StreamCluster) -> dict[str, str]:
    """The ConfigMap's security settings: secret file paths, listeners, SASL, the authorizer."""
    s = cluster.spec
    env = {
        "FLOE_CLUSTER_SECRET_FILE": f"{SECRETS_DIR}/{CLUSTER_SECRET_KEY}",
        "FLOE_ADMIN_TOKEN_FILE": f"{SECRETS_DIR}/{ADMIN_TOKEN_KEY}",
    }
    if s.listeners:
        env["FLOE_LISTENERS"] = ",".join(f"{ln.kafka_name}://0.0.0.0:{ln.port}" for ln in s.listeners)
        env["FLOE_LISTENER_SECURITY_PROTOCOL_MAP"] = ",".join(
            f"{ln.kafka_name}:{ln.security_protocol}" for ln in s.listeners)
        mechanisms = sorted({m for ln in s.listeners if (m := ln.sasl_mechanism)})
        if mechanisms:
            env["FLOE_SASL_ENABLED_MECHANISMS"] = ",".join(mechanisms)
        for ln in s.listeners:
            if ln.sasl_mechanism:
                env[f"FLOE_SASL_ENABLED_MECHANISMS_{_env_suffix(ln)}"] = ln.sasl_mechanism
            if ln.tls is not None:
                env[f"FLOE_SSL_DIR_{_env_suffix(ln)}"] = tls_dir(ln)
            if ln.authentication == "mtls":
                env[f"FLOE_SSL_CLIENT_AUTH_{_env_suffix(ln)}"] = "required"
        if s.scram_listener() is not None:
            env["FLOE_SASL_BOOTSTRAP_USERS_FILE"] = f"{SECRETS_DIR}/{BOOTSTRAP_USERS_KEY}"
    if s.authorization is not None:
        env["FLOE_AUTHORIZER"] = s.authorization.type
        supers = [f"User:{OPERATOR_USER}", *s.authorization.principals()]
        env["FLOE_SUPER_USERS"] = ";".join(dict.fromkeys(supers))
    return env


def advertised_listeners(cluster: spec_.StreamCluster) -> str:
    """``FLOE_ADVERTISED_LISTENERS`` with the pod IP, which the kubelet expands from ``$(POD_IP)``."""
    return ",".join(f"{ln.kafka_name}://$(POD_IP):{ln.port}" for ln in cluster.spec.listeners)


def volumes(cluster: spec_.StreamCluster) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{
        "name": SECRETS_VOLUME,
        "secret": {"secretName": naming.cluster_secret(cluster), "defaultMode": 0o440},
    }]
    for ln in cluster.spec.listeners:
        if ln.tls is not None:
            out.append({"name": f"tls-{ln.name}", "secret": {"secretName": ln.tls.secret_name, "defaultMode": 0o440}})
    return out


def volume_mounts(cluster: spec_.StreamCluster) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True}]
    for ln in cluster.spec.listeners:
        if ln.tls is not None:
            out.append({"name": f"tls-{ln.name}", "mountPath": tls_dir(ln), "readOnly": True})
    return out
