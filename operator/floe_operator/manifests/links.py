"""How a StreamLink's source credentials reach the brokers: one link Secret per StreamCluster, mounted.

The brokers read a link's SASL password and CA from files (a link definition
holds paths, never secrets). So the operator copies the keys a StreamLink
names from the user's Secrets into the cluster's link Secret
``<cluster>-link-secrets``, as ``<link>.password`` and ``<link>.ca.crt``,
and every broker pod mounts that Secret read-only at :data:`LINK_SECRETS_DIR`
(``optional``, so brokers start before any link exists). The kubelet updates
a mounted Secret's files in place, so a new or changed link reaches running
brokers within its sync period (about a minute), with no restart; until then
the link's status says the file is missing.

Each StreamLink writes only its own keys, by server-side apply under its own
field manager, so links never overwrite each other's, and removing a link's
keys is applying the Secret with none of them.
"""

from __future__ import annotations

from typing import Any

from floe_operator import spec as spec_
from floe_operator.manifests import naming

LINK_SECRETS_DIR = "/etc/floe/link-secrets"
LINK_SECRETS_VOLUME = "link-secrets"
PASSWORD_SUFFIX = ".password"
CA_SUFFIX = ".ca.crt"


def link_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-link-secrets"


def field_manager(link: str) -> str:
    """One field manager per StreamLink: its keys are its own in the shared Secret."""
    return f"floe-operator-link-{link}"


def password_file(link: str) -> str:
    return f"{LINK_SECRETS_DIR}/{link}{PASSWORD_SUFFIX}"


def ca_file(link: str) -> str:
    return f"{LINK_SECRETS_DIR}/{link}{CA_SUFFIX}"


def link_secret(cluster: spec_.StreamCluster, link: str, data: dict[str, str]) -> dict[str, Any]:
    """The link Secret as ``link`` applies it: its own keys (base64 ``data``), owned by the StreamCluster."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": link_secret_name(cluster.name),
            "namespace": cluster.namespace,
            "labels": {**naming.labels(cluster), "app.kubernetes.io/component": "link-secrets"},
            "ownerReferences": [{"apiVersion": spec_.API_VERSION, "kind": spec_.KIND, "name": cluster.name,
                                 "uid": cluster.uid, "controller": True, "blockOwnerDeletion": True}],
        },
        "data": data,
    }


def volumes(cluster: spec_.StreamCluster) -> list[dict[str, Any]]:
    return [{"name": LINK_SECRETS_VOLUME, "secret": {"secretName": link_secret_name(cluster.name),
                                                    "defaultMode": 0o440, "optional": True}}]


def volume_mounts(cluster: spec_.StreamCluster) -> list[dict[str, Any]]:
    return [{"name": LINK_SECRETS_VOLUME, "mountPath": LINK_SECRETS_DIR, "readOnly": True}]
