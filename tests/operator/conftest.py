"""Fixtures for the operator tests: the CRD, its schema, and the repo's paths."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "streamcluster.yaml"
CHART_DIR = ROOT / "charts" / "floe-operator"
EXAMPLES_DIR = ROOT / "examples"
# The oldest Kubernetes we support and the newest kubernetes-validate ships.
K8S_VERSIONS = ("1.25.0", "1.37.0")


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="session")
def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# ---------------------------------------------------------------------------
# kopf against kmock: a Kubernetes API emulator in this process, and the
# operator running as a task on the same event loop.
# ---------------------------------------------------------------------------

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402

import aiohttp  # noqa: E402
import aiohttp.web  # noqa: E402
import jsonpatch  # noqa: E402
import kmock as kmock_  # noqa: E402
import server_side_apply  # noqa: E402

APPLY_PATCH = "application/apply-patch+yaml"

NAMESPACE = "streaming"
SC = "floe.dev/v1alpha1/streamclusters"
SU = "floe.dev/v1alpha1/streamusers"
SL = "floe.dev/v1alpha1/streamlinks"
ST = "floe.dev/v1alpha1/streamtopics"


class Api:
    """The test's side of the API: what a user (kubectl) or a controller would do."""

    def __init__(self, emulator: kmock_.KubernetesEmulator, session: aiohttp.ClientSession):
        self.k8s = emulator
        self.session = session

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
        async with self.session.request(method, path, data=json.dumps(body) if body else None, headers=headers) as resp:
            text = await resp.text()
            assert resp.status < 400, f"{method} {path}: {resp.status} {text}"
            return json.loads(text) if text else {}

    async def create_cluster(self, spec: dict[str, Any], name: str = "demo") -> dict[str, Any]:
        import sc_samples

        body = sc_samples.cluster(spec, name=name, namespace=NAMESPACE, uid=f"uid-{name}")
        return await self.request("POST", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamclusters", body)

    async def patch_cluster(self, spec_patch: dict[str, Any], name: str = "demo") -> None:
        """Change the spec as `kubectl apply` would (a JSON merge patch)."""
        await self.request(
            "PATCH", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamclusters/{name}", {"spec": spec_patch}
        )

    async def create_secret(self, name: str, keys: list[str], values: dict[str, str] | None = None) -> None:
        """A Secret with ``keys`` (each "secret") and ``values`` (as given), as ``data`` like the API server."""
        import base64

        data = {k: "c2VjcmV0" for k in keys}
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in (values or {}).items()})
        await self.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "data": data,
            },
        )

    async def create_user(self, spec: dict[str, Any], name: str = "app") -> dict[str, Any]:
        body = {"apiVersion": "floe.dev/v1alpha1", "kind": "StreamUser",
                "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-user-{name}"}, "spec": spec}
        return await self.request("POST", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamusers", body)

    async def patch_user(self, spec_patch: dict[str, Any], name: str = "app") -> None:
        await self.request(
            "PATCH", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamusers/{name}", {"spec": spec_patch})

    async def delete_user(self, name: str = "app") -> None:
        await self.request("DELETE", f"/apis/floe.dev/v1alpha1/namespaces/{NAMESPACE}/streamusers/{name}")

    async def set_deployment_status(self, name: str, status: dict[str, Any]) -> None:
        """Play the Deployment controller: report rollout progress."""
        await self.request(
            "PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status", {"status": status}
        )

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.k8s.objects[resource, NAMESPACE, name]
        except KeyError:
            return None
        if obj.deleted:
            return None
        return json.loads(json.dumps(obj.raw))

    def cluster(self, name: str = "demo") -> dict[str, Any]:
        obj = self.get(SC, name)
        assert obj is not None
        return obj

    def writes(self, resource: str) -> int:
        """How many create/patch/delete requests hit ``resource`` so far."""
        return sum(
            1
            for r in self.k8s
            if r.resource is not None
            and str(r.resource.plural) == resource.rsplit("/", 1)[-1]
            and r.method.upper() in ("POST", "PATCH", "PUT", "DELETE")
        )

    def applies(self) -> list[Any]:
        """Every server-side apply request so far, whether it changed anything or not."""
        return [r for r in self.k8s if _header(r, "Content-Type").startswith(APPLY_PATCH)]

    def events(self) -> list[dict[str, Any]]:
        return [
            json.loads(json.dumps(obj.raw))
            for (res, _ns, _name), obj in self.k8s.objects.items()
            if str(res.plural) == "events" and not obj.deleted
        ]


async def eventually(check: Callable[[], Any], *, within: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy without raising.

    The operator reacts asynchronously (watch stream -> handler -> API), so
    tests wait for the observable outcome instead of sleeping a fixed time.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return result
            error: Exception | None = None
        except AssertionError as exc:
            error = exc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s") from error
        await asyncio.sleep(0.05)


_versions = itertools.count(1)


class Emulator(kmock_.KubernetesEmulator):
    """kmock's emulator plus the two counters kopf relies on, and server-side apply.

    The API server bumps ``metadata.resourceVersion`` on every write and
    ``metadata.generation`` when the spec changes. kopf uses the former to
    tell its own patches from stale events; without it, it would re-run
    handlers on stale copies or wait for versions that never come.

    Server-side apply and field ownership, which kmock does not know, are
    emulated by :mod:`server_side_apply` (see there for what is and is not).
    """

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.name is not None and request.method == "PATCH":
            if _header(request, "Content-Type").startswith(APPLY_PATCH):
                return await self._serve_apply(request)
            refused = self._stale_precondition(request)
            if refused is not None:
                return refused
            self._record_update(request)
        data = request.data
        writes = (kmock_.action.CREATE, kmock_.action.UPDATE)
        if request.resource is not None and request.action in writes and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            meta["resourceVersion"] = str(next(_versions))
            if request.action == kmock_.action.CREATE:
                meta.setdefault("generation", 1)
                if meta.get("generateName") and not meta.get("name"):
                    # As the API server does (kopf names its Events so).
                    meta["name"] = f"{meta['generateName']}{next(_versions):05d}"
            elif "spec" in data and request.subresource is None:
                try:
                    current = self.objects[request.resource, request.namespace, request.name]
                    meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1
                except KeyError:
                    pass
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            # The API server answers a failed JSON-patch "test" (kopf's optimistic
            # resourceVersion check) with 422; kopf then retries on its next cycle.
            # kmock would answer 500, which kopf retries as is, with the stale test.
            return _status(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}")

    def _live(self, request: Any) -> dict[str, Any] | None:
        try:
            obj = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return None
        return None if obj.deleted else copy.deepcopy(obj.raw)

    async def _serve_apply(self, request: Any) -> aiohttp.web.StreamResponse:
        """Store the apply's outcome and tell the watchers, as kmock does for its own writes.

        kmock dispatches on the request it logged, so the apply is served
        here rather than dressed up as a create or a JSON patch.
        """
        manager = request.params.get("fieldManager")
        if not manager:
            return _status(400, "BadRequest", "PATCH with apply requires a fieldManager")
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            live = self._live(request)
            try:
                obj = server_side_apply.apply(
                    live, yaml.safe_load(request.text), manager=manager, force=request.params.get("force") == "true"
                )
            except server_side_apply.Conflict as exc:
                return _status(409, "Conflict", str(exc))
            if obj == live:
                return aiohttp.web.json_response(live)
            meta = obj["metadata"]
            meta["resourceVersion"] = str(next(_versions))
            if live is None:
                meta["generation"] = 1
                if key in self.objects:
                    self.objects[key].create(obj)
                else:
                    self.objects[key] = obj
                event = "ADDED"
            else:
                if obj.get("spec") != live.get("spec"):
                    meta["generation"] = int(meta.get("generation", 1)) + 1
                self.objects[key].patch(jsonpatch.make_patch(live, obj).patch)
                event = "MODIFIED"
            stored = self.objects[key].raw
            await self._buses[request.resource].put({"type": event, "object": stored})
        return aiohttp.web.json_response(stored, status=201 if live is None else 200)

    def _stale_precondition(self, request: Any) -> aiohttp.web.StreamResponse | None:
        """A patch naming ``metadata.resourceVersion`` is refused (409) unless that is the live one.

        The API server treats the resourceVersion in a patch as an
        optimistic-concurrency precondition; the operator's status writes
        rely on it.
        """
        wanted = ((request.data or {}).get("metadata") or {}).get("resourceVersion") if isinstance(
            request.data, dict) else None
        if wanted is None:
            return None
        live = self._live(request)
        current = None if live is None else (live.get("metadata") or {}).get("resourceVersion")
        if current == wanted:
            return None
        return _status(409, "Conflict", f"Operation cannot be fulfilled on {request.name}: the object has been "
                                        "modified; please apply your changes to the latest version and try again")

    def _record_update(self, request: Any) -> None:
        """Give a merge patch's manager the fields it changes, in applied objects only."""
        live = self._live(request)
        if live is None or "managedFields" not in live.get("metadata", {}) or not isinstance(request.data, dict):
            return
        manager = request.params.get("fieldManager") or (_header(request, "User-Agent") or "unknown").split("/")[0]
        managed = server_side_apply.update(live, request.data, manager=manager, subresource=request.subresource)
        request.data.setdefault("metadata", {})["managedFields"] = managed


def _header(request: Any, name: str) -> str:
    """A request header, whatever case the client wrote it in."""
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _status(code: int, reason: str, message: str) -> aiohttp.web.StreamResponse:
    """A Kubernetes Status answer, as the API server sends with every error."""
    return aiohttp.web.json_response(
        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "message": message, "code": code},
        status=code,
    )


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Emulator() as kmock, kmock_.Server(kmock):
        async with aiohttp.ClientSession(base_url=str(kmock.url)) as session:
            kmock.resources.load_bundled()
            kmock.resources[SC] = kmock_.ResourceInfo(
                kind="StreamCluster",
                singular="streamcluster",
                namespaced=True,
                subresources={"status", "scale"},
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            )
            kmock.resources[SU] = kmock_.ResourceInfo(
                kind="StreamUser",
                singular="streamuser",
                namespaced=True,
                subresources={"status"},
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            )
            kmock.resources[ST] = kmock_.ResourceInfo(
                kind="StreamTopic",
                singular="streamtopic",
                namespaced=True,
                subresources={"status"},
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            )
            kmock.resources[SL] = kmock_.ResourceInfo(
                kind="StreamLink",
                singular="streamlink",
                namespaced=True,
                subresources={"status"},
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            )
            yield Api(kmock, session)


@contextlib.asynccontextmanager
async def running_operator(api: Api, tmp_path: Any, *, config: Any = None, **memo_values: Any) -> AsyncIterator[None]:
    """Run the real operator (floe_operator.main handlers) against the emulator.

    It authenticates from a kubeconfig exactly as in production: kopf's own
    login and the operator's KubeClient both read ``$KUBECONFIG``. ``config``
    replaces the test default OperatorConfig; ``memo_values`` go into kopf's
    memo (fakes such as ``user_admin_factory``).
    """
    import kopf
    import kubernetes.config.kube_config

    from floe_operator import config as config_
    from floe_operator import main  # noqa: F401  (registers the handlers)

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": str(api.k8s.url).rstrip("/")}}],
                "users": [{"name": "kmock", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
            }
        )
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # kopf's login uses the kubernetes client's default, frozen at its import.
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        if config is None:
            config = config_.OperatorConfig(broker_image="floe:test", retry_delay_seconds=0.5)
        memo = kopf.Memo(config=config, **memo_values)
        settings = kopf.OperatorSettings()
        ready = asyncio.Event()
        task = asyncio.create_task(
            kopf.operator(
                registry=kopf.get_default_registry(),
                settings=settings,
                clusterwide=True,
                standalone=True,
                ready_flag=ready,
                memo=memo,
            )
        )
        await asyncio.wait_for(ready.wait(), 10)
        try:
            yield
        finally:
            # Cancel rather than set the stop flag: kopf then gives "hung"
            # tasks no 5 s grace, and it counts the emulator's request tasks,
            # started after the operator, as its own.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 15)


@pytest.fixture
async def operator(api: Api, tmp_path: Any) -> AsyncIterator[None]:
    async with running_operator(api, tmp_path):
        yield
