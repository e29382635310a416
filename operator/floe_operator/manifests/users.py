"""The Secret an application gets for a StreamUser: its password and ready client configuration.

Keys an application can mount or load as they are: ``sasl.jaas.config`` for
Java clients, the librdkafka properties (``security.protocol``,
``sasl.mechanism``, ``sasl.username``, ``sasl.password``,
``bootstrap.servers``), the bare ``password``, and ``ca.crt`` when the
listener has TLS and its Secret carries a CA. Values go in ``data``
(base64), as the API server stores them. Owned by the StreamUser, so
deleting the user deletes it.
"""

from __future__ import annotations

import base64
from typing import Any

from floe_operator import spec as spec_
from floe_operator import user_spec
from floe_operator.manifests import naming

PASSWORD_KEY = "password"


def jaas_config(username: str, password: str) -> str:
    def quoted(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"')

    return ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{quoted(username)}" password="{quoted(password)}";')


def client_properties(user: user_spec.StreamUser, cluster: spec_.StreamCluster, listener: spec_.KafkaListener,
                      password: str, *, cluster_domain: str) -> dict[str, str]:
    return {
        "bootstrap.servers": naming.bootstrap_for(cluster, listener, cluster_domain),
        "security.protocol": listener.security_protocol,
        "sasl.mechanism": user.spec.authentication.mechanism,
        "sasl.username": user.name,
        "sasl.password": password,
        "sasl.jaas.config": jaas_config(user.name, password),
        PASSWORD_KEY: password,
    }


def user_secret(user: user_spec.StreamUser, cluster: spec_.StreamCluster, listener: spec_.KafkaListener,
                password: str, *, cluster_domain: str, ca_crt: str | None = None) -> dict[str, Any]:
    values = client_properties(user, cluster, listener, password, cluster_domain=cluster_domain)
    if ca_crt:
        values["ca.crt"] = ca_crt
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": user.secret_name,
            "namespace": user.namespace,
            "labels": {**naming.labels(cluster), "app.kubernetes.io/component": "user", "floe.dev/user": user.name},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }
