"""The cluster Secret: made once with random values, read back, never logged or put in status.

Its values must not change behind running brokers (a new cluster secret
would split the cluster; a new admin token would lock the operator out), so
it is created, not applied: an existing Secret is kept, and only keys that
are missing (someone edited it) are added. It is owned by the StreamCluster,
so it goes with it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import kopf

from floe_operator import kube as kube_
from floe_operator import spec as spec_
from floe_operator.manifests import naming, security


def _random() -> str:
    return secrets.token_urlsafe(32)


def _decode(secret: Mapping[str, Any]) -> dict[str, str]:
    """The Secret's values as text, from ``data`` (base64, as the API server stores them) or ``stringData``."""
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def _encode(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``stringData`` as ``data``, which is what a read returns and what a patch can add keys to."""
    out = dict(manifest)
    out["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in manifest["stringData"].items()}
    del out["stringData"]
    return out


def _values(found: Mapping[str, str]) -> security.ClusterSecrets:
    return security.ClusterSecrets(
        cluster_secret=found.get(security.CLUSTER_SECRET_KEY) or _random(),
        admin_token=found.get(security.ADMIN_TOKEN_KEY) or _random(),
        operator_password=found.get(security.OPERATOR_PASSWORD_KEY) or _random(),
    )


async def ensure(cluster: spec_.StreamCluster, *, body: kopf.Body, kube: kube_.KubeClient) -> None:
    """Create the cluster Secret if it does not exist; add any key that went missing."""
    name = naming.cluster_secret(cluster)
    live = await kube.get("v1", "Secret", cluster.namespace, name)
    if live is None:
        manifest = _encode(security.cluster_secret(cluster, _values({})))
        kopf.adopt(manifest, owner=body)
        try:
            await kube.create(manifest)
            return
        except kube_.KubeError as exc:
            if exc.status != 409:
                raise
        live = await kube.get("v1", "Secret", cluster.namespace, name)  # created meanwhile: keep that one
        if live is None:
            return
    found = _decode(live)
    if all(found.get(k) for k in security.SECRET_KEYS):
        return
    complete = _encode(security.cluster_secret(cluster, _values(found)))
    await kube.patch("v1", "Secret", cluster.namespace, name, {"data": complete["data"]})


async def read(cluster: spec_.StreamCluster, kube: kube_.KubeClient) -> security.ClusterSecrets | None:
    """The values the brokers were given; None while the Secret does not exist yet."""
    live = await kube.get("v1", "Secret", cluster.namespace, naming.cluster_secret(cluster))
    if live is None:
        return None
    found = _decode(live)
    if not all(found.get(k) for k in security.SECRET_KEYS):
        return None
    return _values(found)
