"""A small async Kubernetes client: get, create, patch, delete and apply.

Authentication comes from the official ``kubernetes`` client's config
loaders (kubeconfig and in-cluster); requests go through aiohttp. Objects are plain
dicts, matching what the pure builders in :mod:`floe_operator.manifests`
produce; there is no per-kind model code.

:func:`KubeClient.apply` is the idempotent "make it so" used by the
reconciler. It is client-side apply, as ``kubectl apply`` does it: the
applied object is recorded in an annotation, and the JSON merge patch is
computed three-way (last applied, desired, live), so that

* fields the operator stopped setting are removed (a dropped nodeSelector,
  a removed config key),
* fields other controllers own are left alone (the HPA's ``spec.replicas``
  is additionally pinned with ``keep=``), and
* an object that already matches causes no write at all.

Conflicts are tolerated: a create that loses a race becomes a patch, a patch
of a vanished object becomes a create, a delete of a missing object is fine.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import kubernetes

from floe_operator.manifests import naming

logger = logging.getLogger(__name__)

# kind -> plural for every kind the operator touches. A table beats
# discovery here: the set is fixed and known at build time.
PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Pod": "pods",
    "Event": "events",
    "Deployment": "deployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "StreamCluster": "streamclusters",
}
MERGE_PATCH = "application/merge-patch+json"
Path = Sequence[str]


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP code (0 if none came back)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Applied:
    """The outcome of :meth:`KubeClient.apply`: what happened and the live object."""

    action: Literal["created", "patched", "unchanged"]
    obj: dict[str, Any]


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a (namespaced) object or collection."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{PLURALS[kind]}"
    return path + (f"/{name}" if name else "")


def three_way_patch(
    last: Mapping[str, Any] | None, desired: Mapping[str, Any], live: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON merge patch that turns ``live`` into ``desired``.

    * A key in ``desired`` that differs from ``live`` is set.
    * A key that was in ``last`` (what we applied before) but is no longer in
      ``desired`` is deleted (``None``), if it is still live.
    * Keys nobody asked for (server defaults, other controllers' fields) stay.
    * Lists are atomic in merge patches. One that equals what we applied last
      time is not compared with ``live``, because the server fills defaults
      into list items (container ports' protocol, ...) and the comparison
      would never settle; a list we changed is sent whole.
    """
    patch: dict[str, Any] = {}
    last = last or {}
    for key, want in desired.items():
        have = live.get(key)
        before = last.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            sub = three_way_patch(before if isinstance(before, dict) else {}, want, have)
            if sub:
                patch[key] = sub
        elif isinstance(want, list) and want == before and have is not None:
            continue
        elif want != have:
            patch[key] = want
    for key in last:
        if key not in desired and key in live:
            patch[key] = None
    return patch


def _get_path(obj: Mapping[str, Any], path: Path) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _set_path(obj: dict[str, Any], path: Path, value: Any) -> None:
    cur = obj
    for part in path[:-1]:
        cur = cur.setdefault(part, {})
    cur[path[-1]] = value


def _with_last_applied(desired: Mapping[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(dict(desired))
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    obj.setdefault("metadata", {}).setdefault("annotations", {})[naming.LAST_APPLIED_ANNOTATION] = blob
    return obj


def _last_applied(live: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = (live.get("metadata", {}).get("annotations") or {}).get(naming.LAST_APPLIED_ANNOTATION)
    if not raw:
        return None
    try:
        last = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(last, dict):
        return None
    # The annotation itself was added after the blob was taken.
    return _with_last_applied(last)


class KubeClient:
    """Async client for dict objects; auth comes from a kubernetes ``Configuration``.

    The official client's loaders resolve kubeconfig contexts, exec plugins,
    client certificates and the in-cluster token (re-read as it rotates);
    requests then go out through aiohttp, which the broker already depends on,
    so nothing blocks the event loop and nothing depends on the generated
    client's internals, which change between its major versions.
    """

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        self._configuration = configuration
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls) -> KubeClient:
        """In-cluster service account first, then ``$KUBECONFIG`` / ``~/.kube/config``."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            # $KUBECONFIG read now, not at kubernetes' import time.
            kubernetes.config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None,
                client_configuration=configuration,
            )
        return cls(configuration)

    def _ssl(self) -> ssl.SSLContext | bool:
        c = self._configuration
        if not c.host.startswith("https"):
            return False
        if not c.verify_ssl:
            return False
        context = ssl.create_default_context(cafile=c.ssl_ca_cert or None)
        if c.cert_file:
            context.load_cert_chain(c.cert_file, c.key_file or None)
        return context

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        headers = {"Accept": "application/json", "Content-Type": content_type}
        auth_settings: Any = self._configuration.auth_settings()
        for auth in auth_settings.values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[str(auth["key"])] = str(auth["value"])
        url = self._configuration.host.rstrip("/") + path
        data = None if body is None else json.dumps(body)
        try:
            async with self._session.request(method, url, data=data, headers=headers, params=query) as response:
                text = await response.text()
                if response.status >= 400:
                    raise _error(response.status, response.reason or "", text)
        except aiohttp.ClientError as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        return json.loads(text) if text else {}

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The live object, or None if it does not exist."""
        try:
            return await self.request("GET", object_path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_objects(
        self, api_version: str, kind: str, namespace: str | None, *, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Objects whose labels include ``labels`` (also filtered here, whatever the server did)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        answer = await self.request("GET", object_path(api_version, kind, namespace), query={"labelSelector": selector})
        items = answer.get("items") or []
        return [
            obj
            for obj in items
            if all(((obj.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=dict(obj))

    async def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = object_path(api_version, kind, namespace, name)
        if subresource:
            path += f"/{subresource}"
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (background propagation); False if it was already gone."""
        try:
            await self.request(
                "DELETE",
                object_path(api_version, kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def apply(self, desired: Mapping[str, Any], *, keep: Sequence[Path] = ()) -> Applied:
        """Create or three-way patch ``desired``; see the module docstring.

        ``keep`` lists paths whose live value wins over ``desired`` (e.g.
        ``("spec", "replicas")`` while an HPA owns the count); they are only
        taken from ``desired`` when the object is created.
        """
        meta = desired["metadata"]
        key = (desired["apiVersion"], desired["kind"], meta.get("namespace"), meta["name"])
        live = await self.get(*key)
        if live is None:
            try:
                return Applied("created", await self.create(_with_last_applied(desired)))
            except KubeError as exc:
                if exc.status != 409:
                    raise
                live = await self.get(*key)  # lost a race with another writer
                if live is None:
                    raise
        wanted = copy.deepcopy(dict(desired))
        for path in keep:
            value = _get_path(live, path)
            if value is not None:
                _set_path(wanted, path, value)
        wanted = _with_last_applied(wanted)
        body = three_way_patch(_last_applied(live), wanted, live)
        if not body:
            return Applied("unchanged", dict(live))
        try:
            return Applied("patched", await self.patch(*key, body))
        except KubeError as exc:
            if exc.status != 404:
                raise
            return Applied("created", await self.create(wanted))


def _error(status: int, reason: str, text: str) -> KubeError:
    """Prefer the Status object's reason and message over the HTTP phrase."""
    message = text
    try:
        payload = json.loads(text) if text else {}
        if isinstance(payload, dict):
            reason = payload.get("reason") or reason
            message = payload.get("message") or message
    except ValueError:
        pass
    return KubeError(status, reason, message)
