"""A small async Kubernetes client: get, list, create, patch, delete and apply.

Objects are plain dicts, matching what the pure builders in
:mod:`floe_operator.manifests` produce; there is no per-kind model code.

:meth:`KubeClient.apply` is server-side apply: one ``PATCH`` with content type
``application/apply-patch+yaml``, a field manager (:data:`FIELD_MANAGER`) and
``force=true``. The API server keeps who set which field
(``metadata.managedFields``), so it does what a client-side three-way merge
would have to guess at:

* a field the operator stops sending is removed (a dropped nodeSelector, a
  removed config key), unless another manager also set it;
* fields other managers own are left alone, so while autoscaling is on the
  operator leaves ``spec.replicas`` out of what it applies and the HPA's
  value stays;
* an object that already matches is a server-side no-op (no new
  resourceVersion, no watch event), so there is no client-side diffing;
* ``force=true`` makes the spec win over hand edits (``kubectl edit``) of
  the fields the operator sends; an apply also creates an object that does
  not exist, so there is no create/patch race to handle.

How it talks to the server, and why:

* Authentication comes from the official ``kubernetes`` client's config
  loaders (kubeconfig contexts, exec plugins, client certificates, and the
  in-cluster token, re-read as it rotates).
* Requests go out through aiohttp, which kopf already runs on. The
  ``kubernetes`` package's clients, its ``DynamicClient`` included, are
  synchronous: using them would take a thread per call and a second HTTP
  stack, and apply needs nothing from them but a content type and two query
  parameters.
* REST paths come from API discovery (``GET /api/v1``,
  ``GET /apis/<group>/<version>``), read once per group-version and cached,
  so there is no kind-to-plural table to keep; the ``DynamicClient``'s
  discoverer would fetch every group up front and cache to a file in the
  temp directory.

Objects written by the client-side apply of earlier operator versions carry
a ``floe.dev/last-applied`` annotation, and every field of theirs is owned
by that writer (an ``Update`` manager named after aiohttp's User-Agent).
Applying over that would only share the fields, so a field dropped later
would stay. The first apply that sees the annotation therefore resets
``managedFields`` (the documented ``[{}]``), drops the annotation, and
applies again, after which the operator alone owns what it sends.

Conflicts are tolerated where they mean "already done": a delete of a
missing object is fine, and a get of one is None.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes

logger = logging.getLogger(__name__)

FIELD_MANAGER = "floe-operator"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON
LEGACY_LAST_APPLIED = "floe.dev/last-applied"
# A merge patch that forgets every field owner, and the old client-side apply's record.
FORGET_OWNERS = {"metadata": {"managedFields": [{}], "annotations": {LEGACY_LAST_APPLIED: None}}}


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP code (0 if none came back)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API, as discovery reports it."""

    base: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        path = self.base + (f"/namespaces/{namespace}" if namespace and self.namespaced else "") + f"/{self.plural}"
        if name:
            path += f"/{name}"
        if name and subresource:
            path += f"/{subresource}"
        return path


def api_base(api_version: str) -> str:
    """The discovery path of a group-version: the core group has no group name."""
    return f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"


def owns(obj: Mapping[str, Any], manager: str, path: Sequence[str]) -> bool:
    """Whether ``manager`` applied the field at ``path``, per ``metadata.managedFields``.

    Field sets (``fieldsV1``) nest one ``f:<key>`` level per map key, so a
    field is owned when every step of its path is there.
    """
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        fields: Any = entry.get("fieldsV1") or {}
        for key in path:
            fields = fields.get(f"f:{key}") if isinstance(fields, Mapping) else None
        if fields is not None:
            return True
    return False


class KubeClient:
    """Async client for dict objects; auth comes from a kubernetes ``Configuration``."""

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        self._configuration = configuration
        self._session: aiohttp.ClientSession | None = None
        self._resources: dict[tuple[str, str], Resource] = {}

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

    async def resource(self, api_version: str, kind: str) -> Resource:
        """Where ``kind`` lives; discovered from the server once per group-version.

        A kind the server does not serve (a CRD not installed yet) is not
        remembered, so it is found once it is installed.
        """
        key = (api_version, kind)
        if key not in self._resources:
            base = api_base(api_version)
            listing = await self.request("GET", base)
            for item in listing.get("resources") or []:
                if "/" not in item["name"]:  # "deployments/scale" is a subresource
                    self._resources[(api_version, item["kind"])] = Resource(base, item["name"], item["namespaced"])
            if key not in self._resources:
                raise KubeError(404, "NotFound", f"the server does not serve {kind} in {api_version}")
        return self._resources[key]

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The live object, or None if it does not exist."""
        path = (await self.resource(api_version, kind)).path(namespace, name)
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_objects(
        self, api_version: str, kind: str, namespace: str | None, *, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """Objects whose labels include ``labels`` (also filtered here, whatever the server did)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        path = (await self.resource(api_version, kind)).path(namespace)
        answer = await self.request("GET", path, query={"labelSelector": selector})
        items = answer.get("items") or []
        return [
            obj
            for obj in items
            if all(((obj.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        path = (await self.resource(obj["apiVersion"], obj["kind"])).path(obj["metadata"].get("namespace"))
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
        """A JSON merge patch: for the few fields the operator changes in objects it does not apply."""
        path = (await self.resource(api_version, kind)).path(namespace, name, subresource)
        return await self.request("PATCH", path, body=dict(patch), content_type=MERGE_PATCH)

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (background propagation); False if it was already gone."""
        path = (await self.resource(api_version, kind)).path(namespace, name)
        try:
            await self.request("DELETE", path, body={"propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def apply(
        self, desired: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply ``desired`` (see the module docstring); return the live object.

        ``force=False`` is for fields the caller should not take from another
        manager: a different value there is refused with a 409 ``KubeError``.
        """
        meta = desired["metadata"]
        path = (await self.resource(desired["apiVersion"], desired["kind"])).path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": field_manager}
        if force:
            query["force"] = "true"
        live = await self.request("PATCH", path, body=dict(desired), content_type=APPLY_PATCH, query=query)
        if LEGACY_LAST_APPLIED in ((live.get("metadata") or {}).get("annotations") or {}):
            logger.info(
                "Taking over %s %s/%s from client-side apply", desired["kind"], meta.get("namespace"), meta["name"]
            )
            await self.request("PATCH", path, body=FORGET_OWNERS, content_type=MERGE_PATCH)
            live = await self.request("PATCH", path, body=dict(desired), content_type=APPLY_PATCH, query=query)
        return live


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
