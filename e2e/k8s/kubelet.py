"""A kubelet stand-in: one Node whose pods are local processes, each on its own loopback address.

What it does, as the kubelet (and a one-node scheduler) would:

* registers a Node (``Ready``, address 127.0.0.1) and keeps its Lease renewed,
  so the node lifecycle controller never marks it unreachable;
* binds every pending pod to that Node (the trivial scheduler);
* gives each pod its own IP, 127.0.0.<n>, and runs each container's command
  as a process with the environment resolved as the kubelet resolves it:
  ``envFrom`` ConfigMaps and Secrets (with ``prefix``) first, then ``env``,
  which wins: values with ``$(VAR)`` expansion, and ``valueFrom``
  (``fieldRef``: pod name, namespace, UID, IP, host IP, node name, service
  account, labels and annotations; ``secretKeyRef``, ``configMapKeyRef``);
* writes Secret and ConfigMap volumes into the pod's directory (other volume
  types are empty directories);
* reports the pod ``Running`` and its ``Ready`` condition from the readiness
  probe (HTTP GET; a container without one is ready once it runs); restarts
  a container that exits (``restartPolicy: Always``), and one that fails its
  liveness probe ``failureThreshold`` times in a row (SIGTERM, the grace
  period, SIGKILL, then a restart counted in ``restartCount``);
* on deletion runs the preStop hook (exec), sends SIGTERM, waits out the
  grace period, SIGKILLs what is left of the container's process group,
  reports each container ``terminated`` with its exit code, then deletes the
  pod for good.

Each container is a process group of its own (its own session); when its
main process ends, the rest of the group is killed, as a container runtime
ends a container's PID namespace. When the stand-in stops, for whatever
reason (SIGINT, SIGTERM, its parent gone, an error in its loop), it kills
every group it started before it exits, so no pod outlives it. Each
container also carries a marker in its environment (``podprocesses.py``), by
which the test harness finds and kills what is left should the stand-in
itself be killed.

There are no images and no network namespaces, so four mappings stand in for
the container:

* the image's command: ``floe`` (the broker image's entrypoint, also used
  when a container gives no command) runs ``<venv>/bin/floe``; other commands
  (``sh``, ``python3``) run from the host's PATH;
* the pod's own addresses: ``0.0.0.0`` and ``127.0.0.1`` in env values,
  args and hook commands mean the pod, so they become the pod IP;
* volume mount paths: ``/etc/floe/secrets`` and the like are rewritten to
  ``<pod dir>/<mount path>`` wherever they appear in env values, args and
  hook commands;
* the ServiceAccount token: the kubelet mounts a bound token (TokenRequest)
  where in-cluster clients look for it, a path this host cannot give; so it
  writes a kubeconfig with that token into the pod's directory and sets
  ``KUBECONFIG`` (clients fall back to it, with no ``KUBERNETES_SERVICE_HOST``);
* the user, resource limits and security context are not applied.

Run with ``python e2e/k8s/kubelet.py --kubeconfig K --workdir D``, or use
:class:`Kubelet` in a test (``async with Kubelet(...)``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import datetime
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kubernetes
import podprocesses

from floe_operator import kube as kube_

logger = logging.getLogger("kubelet")

NODE = "floe-e2e-node"
VENV_BIN = pathlib.Path(sys.executable).parent
IMAGE_ENTRYPOINT = ["floe"]  # the broker image's ENTRYPOINT (Dockerfile)
POLL_SECONDS = 0.5


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# 0.0.0.0 and 127.0.0.1 as whole addresses (not the start of 127.0.0.12).
_POD_SELF = re.compile(r"(?<![\d.])(?:0\.0\.0\.0|127\.0\.0\.1)(?![\d])")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(one, value)


@dataclass
class Container:
    name: str
    spec: dict[str, Any]
    env: dict[str, str]
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    ready: bool = False
    started_at: str = ""
    launched: float = 0.0  # monotonic time of the last start
    was_ready: bool = False  # ready at least once since the last start: liveness probing begins
    live_checked: float = 0.0  # monotonic time of the last liveness probe
    live_failures: int = 0  # liveness probes failed in a row
    stopping: bool = False  # killed for failing its liveness probe; restarted once it has exited


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    ip: str
    directory: pathlib.Path
    body: dict[str, Any]
    mounts: dict[str, pathlib.Path] = field(default_factory=dict)  # mount path -> host path
    containers: list[Container] = field(default_factory=list)
    terminating: bool = False
    reported: Any = None


class Kubelet:
    """The node agent; ``run()`` until cancelled. One instance per control plane."""

    def __init__(
        self, kube: kube_.KubeClient, workdir: pathlib.Path, *, node: str = NODE, server: str = "", ca_file: str = ""
    ) -> None:
        self.kube = kube
        self.server = server  # the API server pods are given (with ca_file) in their kubeconfig
        self.ca_data = pathlib.Path(ca_file).read_bytes() if ca_file else b""
        self.workdir = workdir
        self.node = node
        self.pods: dict[str, Pod] = {}  # uid -> pod
        self._next_ip = 10
        self._task: asyncio.Task[None] | None = None
        self._groups: set[int] = set()  # process groups started and not yet known to be empty

    @classmethod
    def from_kubeconfig(cls, kubeconfig: pathlib.Path, workdir: pathlib.Path) -> Kubelet:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        return cls(kube_.KubeClient(configuration), workdir, server=configuration.host,
                   ca_file=configuration.ssl_ca_cert or "")  # fmt: skip

    async def __aenter__(self) -> Kubelet:
        await self.register()
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
                except Exception:  # the loop died earlier: its pods must go all the same
                    logger.exception("the pod loop had failed")
        finally:
            self.kill_every_group()
            await asyncio.gather(*(self._kill(pod) for pod in list(self.pods.values())), return_exceptions=True)
            await self.kube.close()

    def kill_every_group(self) -> None:
        """SIGKILL every process group this stand-in started; synchronous, so usable at exit."""
        for group in list(self._groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
            self._groups.discard(group)

    def _end_group(self, container: Container) -> None:
        """The container's main process has ended: what it left in its group goes too."""
        if container.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(container.process.pid, signal.SIGKILL)
        self._groups.discard(container.process.pid)

    # --- the node -------------------------------------------------------------

    def _node_status(self) -> dict[str, Any]:
        at = now()
        conditions = [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "floe e2e kubelet stand-in",
             "lastHeartbeatTime": at, "lastTransitionTime": at},
        ]  # fmt: skip
        for type_ in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            conditions.append({"type": type_, "status": "False", "reason": "KubeletHasSufficient",
                               "lastHeartbeatTime": at, "lastTransitionTime": at})  # fmt: skip
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {"kubeletVersion": "v1.34.4", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "floe-e2e://1", "kernelVersion": "", "osImage": "",
                         "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }  # fmt: skip

    async def register(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": {
                "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": "e2e"}},
        }  # fmt: skip
        if await self.kube.get("v1", "Node", None, self.node) is None:
            await self.kube.create(node)
        await self.kube.patch("v1", "Node", None, self.node, {"status": self._node_status()}, subresource="status")
        await self._renew_lease()

    async def _renew_lease(self) -> None:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": micro_now()},
        }
        await self.kube.apply(lease, field_manager="floe-e2e-kubelet")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(10)
            try:
                await self._renew_lease()
                await self.kube.patch("v1", "Node", None, self.node, {"status": self._node_status()},
                                      subresource="status")
            except kube_.KubeError as exc:
                logger.warning("node heartbeat failed: %s", exc)

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while True:
                try:
                    await self.sync()
                except (kube_.KubeError, aiohttp.ClientError, OSError) as exc:
                    logger.warning("sync failed: %s", exc)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            heartbeat.cancel()

    async def sync(self) -> None:
        listing = await self.kube.request("GET", "/api/v1/pods")
        seen: set[str] = set()
        for body in listing.get("items") or []:
            meta = body["metadata"]
            spec = body.get("spec") or {}
            uid = meta["uid"]
            if not spec.get("nodeName"):
                await self._bind(body)
                continue
            if spec["nodeName"] != self.node:
                continue
            seen.add(uid)
            pod = self.pods.get(uid)
            if meta.get("deletionTimestamp"):
                if pod is None:
                    await self._finally_delete(meta["namespace"], meta["name"], uid)
                elif not pod.terminating:
                    pod.terminating = True
                    asyncio.create_task(self._terminate(pod, body))
                continue
            if pod is None:
                if (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                pod = await self._start(body)
            if not pod.terminating:
                await self._tend(pod)
        for uid in set(self.pods) - seen:  # deleted behind our back (force delete)
            pod = self.pods.pop(uid)
            await self._kill(pod)

    async def _bind(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta["uid"]},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}  # fmt: skip
        try:
            await self.kube.request(
                "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", body=binding
            )
            logger.info("bound %s/%s to %s", meta["namespace"], meta["name"], self.node)
        except kube_.KubeError as exc:
            if exc.status not in (404, 409):
                raise

    # --- starting a pod -------------------------------------------------------

    async def _start(self, body: dict[str, Any]) -> Pod:
        meta = body["metadata"]
        ip = f"127.0.0.{self._next_ip}"
        self._next_ip = self._next_ip + 1 if self._next_ip < 250 else 10
        directory = self.workdir / "pods" / meta["uid"]
        directory.mkdir(parents=True, exist_ok=True)
        pod = Pod(meta["namespace"], meta["name"], meta["uid"], ip, directory, body)
        kubeconfig = await self._service_account(pod)  # before the pod is ours: a failure retries next sync
        self.pods[pod.uid] = pod
        await self._volumes(pod)
        spec = body.get("spec") or {}
        for c in spec.get("containers") or []:
            env = await self._environment(pod, c)
            command = [expand(a, env) for a in (c.get("command") or IMAGE_ENTRYPOINT)]
            args = [expand(a, env) for a in (c.get("args") or [])]
            container = Container(c["name"], c, {k: self._localise(pod, v) for k, v in env.items()},
                                  self._resolve([self._localise(pod, a) for a in command + args]))
            if kubeconfig is not None and "KUBECONFIG" not in env:  # a host path: not one to localise
                container.env["KUBECONFIG"] = str(kubeconfig)
            pod.containers.append(container)
            await self._launch(pod, container)
        logger.info("started %s/%s on %s", pod.namespace, pod.name, pod.ip)
        return pod

    async def _service_account(self, pod: Pod) -> pathlib.Path | None:
        """A kubeconfig with a token bound to this pod, for its ServiceAccount (None: not mounted)."""
        spec = pod.body.get("spec") or {}
        if not self.server or spec.get("automountServiceAccountToken") is False:
            return None
        account = spec.get("serviceAccountName") or "default"
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "expirationSeconds": 7200,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}}}  # fmt: skip
        answer = await self.kube.request(
            "POST", f"/api/v1/namespaces/{pod.namespace}/serviceaccounts/{account}/token", body=request
        )
        ca = base64.b64encode(self.ca_data).decode()
        cluster: dict[str, Any] = {"server": self.server}
        if self.ca_data:
            cluster["certificate-authority-data"] = ca
        path = pod.directory / "serviceaccount.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
            "contexts": [{"name": "pod", "context": {"cluster": "cluster", "user": account,
                                                     "namespace": pod.namespace}}],
            "current-context": "pod",
        }))  # fmt: skip
        path.chmod(0o600)
        return path

    def _resolve(self, command: list[str]) -> list[str]:
        """The image's executables: ``floe`` is the venv's; anything else comes from PATH.

        Applied after :meth:`_localise`, so a pod's volume mounted at a prefix of the venv's
        own path (an emptyDir at ``/tmp`` with the checkout under ``/tmp``) cannot rewrite it.
        """
        if command and command[0] == "floe":
            return [str(VENV_BIN / "floe"), *command[1:]]
        return command

    def _localise(self, pod: Pod, value: str) -> str:
        """What means "this pod" inside a container, made to mean it on a shared host."""
        for mount, host in sorted(pod.mounts.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(mount, str(host))
        return _POD_SELF.sub(pod.ip, value)

    async def _object_data(self, kind: str, namespace: str, name: str, *, optional: bool = False) -> dict[str, str]:
        obj = await self.kube.get("v1", kind, namespace, name)
        if obj is None:
            if optional:
                return {}
            raise kube_.KubeError(404, "NotFound", f"{kind} {namespace}/{name} does not exist")
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    def _field(self, pod: Pod, path: str) -> str:
        meta = pod.body["metadata"]
        simple = {
            "metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
            "status.podIP": pod.ip, "status.hostIP": "127.0.0.1", "spec.nodeName": self.node,
            "spec.serviceAccountName": (pod.body.get("spec") or {}).get("serviceAccountName", "default"),
        }  # fmt: skip
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        raise ValueError(f"fieldRef {path} is not supported by the kubelet stand-in")

    async def _environment(self, pod: Pod, c: Mapping[str, Any]) -> dict[str, str]:
        """envFrom first, then env (which wins), each ``$(VAR)``-expanded against what came before."""
        env: dict[str, str] = {}
        for source in c.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = await self._object_data("ConfigMap", pod.namespace, ref["name"],
                                               optional=ref.get("optional", False))
            else:
                ref = source["secretRef"]
                data = await self._object_data("Secret", pod.namespace, ref["name"],
                                               optional=ref.get("optional", False))
            env.update({prefix + k: v for k, v in data.items()})
        for var in c.get("env") or []:
            if "value" in var or "valueFrom" not in var:
                env[var["name"]] = expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[var["name"]] = self._field(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
                ref = source.get("secretKeyRef") or source["configMapKeyRef"]
                data = await self._object_data(kind, pod.namespace, ref["name"], optional=ref.get("optional", False))
                if ref["key"] in data:
                    env[var["name"]] = data[ref["key"]]
                elif not ref.get("optional", False):
                    raise kube_.KubeError(404, "NotFound", f"{kind} {ref['name']} has no key {ref['key']}")
            elif "resourceFieldRef" in source:
                env[var["name"]] = "0"
        return env

    async def _volumes(self, pod: Pod) -> None:
        spec = pod.body.get("spec") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in spec.get("containers") or []:
            for mount in c.get("volumeMounts") or []:
                volume = volumes.get(mount["name"]) or {}
                host = pod.directory / "volumes" / mount["name"]
                host.mkdir(parents=True, exist_ok=True)
                files: dict[str, str] = {}
                if "secret" in volume:
                    files = await self._object_data("Secret", pod.namespace, volume["secret"]["secretName"],
                                                    optional=volume["secret"].get("optional", False))
                elif "configMap" in volume:
                    files = await self._object_data("ConfigMap", pod.namespace, volume["configMap"]["name"],
                                                    optional=volume["configMap"].get("optional", False))
                for key, text in files.items():
                    (host / key).write_text(text)
                path = host / mount["subPath"] if mount.get("subPath") else host
                pod.mounts[mount["mountPath"].rstrip("/")] = path

    async def _launch(self, pod: Pod, container: Container) -> None:
        log = open(pod.directory / f"{container.name}.log", "ab")  # noqa: ASYNC230 - a local file, opened once per start
        container.process = await asyncio.create_subprocess_exec(
            *container.argv,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(pod.directory), **container.env,
                 **podprocesses.marker(self.workdir)},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=pod.directory,
            start_new_session=True,
        )
        self._groups.add(container.process.pid)  # its own session: the group id is its pid
        log.close()
        container.started_at = now()
        container.ready = False
        container.launched = time.monotonic()
        container.was_ready = container.stopping = False
        container.live_failures = 0

    # --- keeping it running and reporting it ----------------------------------

    async def _tend(self, pod: Pod) -> None:
        for container in pod.containers:
            proc = container.process
            if proc is not None and proc.returncode is not None:
                logger.warning("%s/%s container %s exited with %s; restarting", pod.namespace, pod.name,
                               container.name, proc.returncode)
                container.restarts += 1
                self._end_group(container)
                await self._launch(pod, container)
            if container.stopping:
                continue
            container.ready = await self._probe(pod, container, container.spec.get("readinessProbe"))
            container.was_ready = container.was_ready or container.ready
            if await self._fails_liveness(pod, container):
                probe = container.spec["livenessProbe"]
                logger.warning("%s/%s container %s failed its liveness probe %d times; restarting", pod.namespace,
                               pod.name, container.name, probe.get("failureThreshold", 3))
                container.stopping, container.ready = True, False
                grace = float((pod.body.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                asyncio.create_task(self._stop_container(container, grace))
        await self._report(pod)

    async def _fails_liveness(self, pod: Pod, container: Container) -> bool:
        """The kubelet's liveness rule: probed every ``periodSeconds`` once the container has
        started (ready once, which stands in for a startup probe passing, or past
        ``initialDelaySeconds`` without one); ``failureThreshold`` failures in a row fail it."""
        probe = container.spec.get("livenessProbe")
        if probe is None or container.process is None or container.process.returncode is not None:
            return False
        clock = time.monotonic()
        started = container.was_ready or (
            "startupProbe" not in container.spec
            and clock - container.launched >= probe.get("initialDelaySeconds", 0))
        if not started or clock - container.live_checked < probe.get("periodSeconds", 10):
            return False
        container.live_checked = clock
        if await self._probe(pod, container, probe):
            container.live_failures = 0
            return False
        container.live_failures += 1
        return container.live_failures >= probe.get("failureThreshold", 3)

    async def _stop_container(self, container: Container, grace: float) -> None:
        """SIGTERM, the grace period, then SIGKILL of the group, as the kubelet kills a container
        that failed its liveness probe; the next round restarts it (``restartPolicy: Always``)."""
        proc = container.process
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _probe(self, pod: Pod, container: Container, probe: dict[str, Any] | None) -> bool:
        """One probe (HTTP GET); a readiness probe that is absent means ready while running."""
        if probe is None:
            return container.process is not None and container.process.returncode is None
        get = probe.get("httpGet")
        if get is None:
            return True
        port = get["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container.spec.get("ports") or [] if p.get("name") == port)
        url = f"http://{pod.ip}:{port}{get.get('path', '/')}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=probe.get("timeoutSeconds", 1))) as s:
                async with s.get(url) as resp:
                    return 200 <= resp.status < 400
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _report(self, pod: Pod) -> None:
        ready = all(c.ready for c in pod.containers)
        at = now()
        state = (ready, tuple(c.restarts for c in pod.containers))
        if pod.reported == state:
            return

        def cond(type_: str, status: bool) -> dict[str, Any]:
            return {"type": type_, "status": "True" if status else "False", "lastTransitionTime": at}

        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "startTime": pod.containers[0].started_at if pod.containers else at,
            "conditions": [cond("PodScheduled", True), cond("Initialized", True), cond("ContainersReady", ready),
                           cond("Ready", ready)],
            "containerStatuses": [{
                "name": c.name, "ready": c.ready, "started": True, "restartCount": c.restarts,
                "image": c.spec.get("image", ""), "imageID": "", "containerID": f"floe-e2e://{pod.uid}/{c.name}",
                "state": {"running": {"startedAt": c.started_at}},
            } for c in pod.containers],
        }  # fmt: skip
        try:
            await self.kube.patch("v1", "Pod", pod.namespace, pod.name, {"status": status}, subresource="status")
            pod.reported = state
        except kube_.KubeError as exc:
            if exc.status != 404:
                raise

    # --- stopping a pod -------------------------------------------------------

    async def _terminate(self, pod: Pod, body: dict[str, Any]) -> None:
        """preStop, SIGTERM, the grace period, SIGKILL, then the final delete."""
        grace = float((body.get("metadata") or {}).get("deletionGracePeriodSeconds")
                      or (body.get("spec") or {}).get("terminationGracePeriodSeconds", 30))  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        logger.info("stopping %s/%s (grace %.0fs)", pod.namespace, pod.name, grace)
        try:
            await asyncio.gather(*(self._pre_stop(pod, c, deadline) for c in pod.containers))
            for c in pod.containers:
                if c.process is not None and c.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        c.process.send_signal(signal.SIGTERM)
            for c in pod.containers:
                if c.process is None:
                    continue
                try:
                    await asyncio.wait_for(c.process.wait(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        c.process.kill()
                    await c.process.wait()
                self._end_group(c)
            await self._report_terminated(pod)
            # How each container ended (a broker's drain exits 0): the pod object is gone next.
            logger.info("stopped %s/%s: %s", pod.namespace, pod.name, ", ".join(
                f"{c.name} exited {c.process.returncode}" for c in pod.containers if c.process is not None))
        finally:
            self.pods.pop(pod.uid, None)
            await self._finally_delete(pod.namespace, pod.name, pod.uid)
            shutil.rmtree(pod.directory / "volumes", ignore_errors=True)

    async def _report_terminated(self, pod: Pod) -> None:
        """Each container's exit code in its status, as the kubelet reports it before the pod goes."""
        at = now()
        statuses = []
        for c in pod.containers:
            code = c.process.returncode if c.process is not None else None
            statuses.append({
                "name": c.name, "ready": False, "started": False, "restartCount": c.restarts,
                "image": c.spec.get("image", ""), "imageID": "", "containerID": f"floe-e2e://{pod.uid}/{c.name}",
                "state": {"terminated": {"exitCode": code if code is not None else 137,
                                         "reason": "Completed" if code == 0 else "Error",
                                         "startedAt": c.started_at, "finishedAt": at}},
            })  # fmt: skip
        ready = {"type": "Ready", "status": "False", "lastTransitionTime": at}
        try:
            await self.kube.patch("v1", "Pod", pod.namespace, pod.name,
                                  {"status": {"containerStatuses": statuses, "conditions": [ready]}},
                                  subresource="status")  # fmt: skip
        except kube_.KubeError as exc:
            if exc.status != 404:
                logger.warning("could not report %s/%s terminated: %s", pod.namespace, pod.name, exc)

    async def _pre_stop(self, pod: Pod, container: Container, deadline: float) -> None:
        hook = ((container.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        if not hook or container.process is None or container.process.returncode is not None:
            return
        argv = self._resolve([self._localise(pod, expand(a, container.env)) for a in hook["command"]])
        proc = await asyncio.create_subprocess_exec(
            *argv, env={"PATH": os.environ.get("PATH", ""), **container.env}, cwd=pod.directory,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(proc.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _finally_delete(self, namespace: str, name: str, uid: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}  # fmt: skip
        try:
            await self.kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=body)
        except kube_.KubeError as exc:
            if exc.status not in (404, 409):
                raise

    async def _kill(self, pod: Pod) -> None:
        for c in pod.containers:
            if c.process is not None and c.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.process.kill()
                await c.process.wait()
            self._end_group(c)


async def _orphaned(parent: int) -> None:
    """Return once the process that started this one is gone (its test run died without stopping it)."""
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's death but this
        await asyncio.sleep(1.0)
    logger.warning("parent %d is gone; stopping every pod", parent)


async def _main(kubeconfig: pathlib.Path, workdir: pathlib.Path, parent: int) -> None:
    kubelet = Kubelet.from_kubeconfig(kubeconfig, workdir)
    atexit.register(kubelet.kill_every_group)  # whatever way this process ends but SIGKILL
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with kubelet:
        orphaned = asyncio.create_task(_orphaned(parent))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({orphaned, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            orphaned.cancel()
            stopped.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workdir", required=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        args = parser.parse_args()
        asyncio.run(_main(pathlib.Path(args.kubeconfig), pathlib.Path(args.workdir).absolute(), os.getppid()))
