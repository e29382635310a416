"""Fixtures of the real-control-plane tier: the control plane, the node, moto, the operator.

Module-scoped: each scenario file gets its own control plane, so one file's
leftovers (an uninstalled operator, deleted clusters) never reach another.
"""

from __future__ import annotations

import atexit
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import controlplane
import podprocesses
import pytest
from harness import NAMESPACE, OPERATOR_NAMESPACE, ROOT, Cluster, eventually, helm_binary, is_ready, stop_process

from tests.infra.moto_server import MotoServer

HERE = pathlib.Path(__file__).resolve().parent
CHART = ROOT / "charts" / "floe-operator"


@pytest.fixture(scope="module")
def workdir() -> Iterator[pathlib.Path]:
    """Logs, pod directories, the control plane's data; kept for a look with FLOE_E2E_KEEP_WORKDIR=1."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="floe-k8s-"))
    yield path
    if os.environ.get("FLOE_E2E_KEEP_WORKDIR") == "1":
        print(f"\nkept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def plane(workdir: pathlib.Path) -> Iterator[controlplane.ControlPlane]:
    with controlplane.ControlPlane(workdir / "plane") as plane:
        yield plane


@pytest.fixture(scope="module")
def node_dir(workdir: pathlib.Path) -> pathlib.Path:
    """Where the kubelet stand-in keeps its pods; also the marker its pod processes carry."""
    return workdir / "node"


@pytest.fixture(scope="module")
def kube(plane: controlplane.ControlPlane, workdir: pathlib.Path, node_dir: pathlib.Path) -> Iterator[Cluster]:
    """The control plane plus the kubelet stand-in: a one-node cluster.

    Whatever happens, no pod process outlives the module: the stand-in kills
    its pods when it stops, and what is left after that (the stand-in killed,
    or this process exiting without teardown) is found by its marker and
    killed here and at exit.
    """
    sweep = atexit.register(podprocesses.kill_all, node_dir)
    log = open(workdir / "kubelet.log", "wb")  # noqa: SIM115
    kubelet = subprocess.Popen(
        [sys.executable, str(HERE / "kubelet.py"), "--kubeconfig", str(plane.kubeconfig), "--workdir", str(node_dir)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
    )  # fmt: skip
    cluster = Cluster(plane.kubeconfig)
    try:
        eventually(lambda: "Ready" in cluster.kubectl("get", "nodes").stdout, within=60, what="node Ready")
        # The controller manager creates each namespace's default ServiceAccount; pods need it.
        cluster.kubectl("create", "namespace", NAMESPACE)
        yield cluster
    finally:
        stop_process(kubelet, signal.SIGINT, wait=60)  # SIGINT: it stops its pods first
        log.close()
        left = podprocesses.kill_all(node_dir)
        atexit.unregister(sweep)
        if left:
            print(f"\nkilled {len(left)} pod process(es) the kubelet stand-in left behind: {left}")


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with MotoServer(bucket="floe", auth=False) as server:
        yield server


@pytest.fixture(scope="module")
def service_proxy(plane: controlplane.ControlPlane, workdir: pathlib.Path) -> Iterator[int]:
    """``serviceproxy.py``: how processes on the host reach a Service; yields its port."""
    port = controlplane.free_port()
    log = open(workdir / "serviceproxy.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "serviceproxy.py"), "--kubeconfig", str(plane.kubeconfig), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
    )  # fmt: skip
    try:
        yield port
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def helm(kube: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = str(helm_binary())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *args], capture_output=True, text=True, env=kube.env, check=True, timeout=120)

    return run


def operator_ready(kube: Cluster) -> bool:
    pods = kube.items("pods", "-l", "app.kubernetes.io/name=floe-operator", namespace=OPERATOR_NAMESPACE)
    return any(is_ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods)


@pytest.fixture(scope="module")
def operator(
    kube: Cluster, helm: Callable[..., subprocess.CompletedProcess[str]], service_proxy: int, workdir: pathlib.Path
) -> Iterator[None]:
    """``helm install`` of the chart: its CRDs, RBAC, and the operator as a pod of the kubelet stand-in.

    The operator pod gets its ServiceAccount's token from the kubelet (as a
    kubeconfig), so the chart's RBAC is what it runs with. It reaches the
    brokers' admin API through ``serviceproxy.py`` (``localhost``: in a pod,
    127.0.0.1 is the pod's own address).
    """
    extra_env = [
        {"name": "FLOE_OPERATOR_BROKER_ADMIN_URL",
         "value": f"http://localhost:{service_proxy}/{{namespace}}/{{service}}/{{port}}"},
        {"name": "FLOE_OPERATOR_RETRY_DELAY_SECONDS", "value": "2"},
    ]  # fmt: skip
    helm("install", "floe", str(CHART), "-n", OPERATOR_NAMESPACE, "--create-namespace", "--set", "logFormat=console",
         "--set-json", f"extraEnv={json.dumps(extra_env)}")  # fmt: skip
    kube.kubectl("wait", "--for=condition=Established", "crd/streamclusters.floe.dev", "crd/streamusers.floe.dev")
    eventually(lambda: operator_ready(kube), within=120, what="the operator pod Ready")
    try:
        yield
    finally:
        # The operator's log outlives the pod: copy it next to the others (each restart's own).
        for n, log in enumerate(sorted((workdir / "node" / "pods").glob("*/operator.log"))):
            shutil.copy(log, workdir / f"operator-{n}.log" if n else workdir / "operator.log")
