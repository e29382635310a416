"""What the real-control-plane scenarios share: kubectl as the test's user, polling, the example cluster.

The fixtures that start the control plane, the kubelet stand-in, moto and the
operator are in ``conftest.py``; this module holds the plain helpers both
scenario files import.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import controlplane  # noqa: E402

from tests.infra.moto_server import MotoServer  # noqa: E402

NAMESPACE = "streaming"
OPERATOR_NAMESPACE = "floe-system"
CHART = ROOT / "charts" / "floe-operator"

# build.sh's kubectl first (the server's own version; Debian packages none), then the host's.
BUILT = pathlib.Path(os.environ.get("FLOE_K8S_BIN_ROOT", pathlib.Path.home() / ".cache/floe/k8s-bin"))
PATH = f"{BUILT / ('v' + controlplane.K8S_VERSION)}{os.pathsep}{os.environ.get('PATH', '')}"

needs_kubernetes = pytest.mark.skipif(shutil.which("kubectl", path=PATH) is None or shutil.which("go") is None,
                                      reason="needs Go (and kubectl, which e2e/k8s/build.sh builds)")  # fmt: skip


def eventually(check: Callable[[], Any], *, within: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (subprocess.CalledProcessError, KeyError, ValueError, IndexError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what or 'condition'} not met within {within}s (last: {last!r})")


class Cluster:
    """kubectl against the control plane, as the test's user."""

    def __init__(self, kubeconfig: pathlib.Path) -> None:
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": PATH}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=self.env,
                              check=check, timeout=60)  # fmt: skip

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]

    def items(self, kind: str, *args: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return json.loads(self.kubectl("get", kind, "-n", namespace, *args, "-o", "json").stdout)["items"]  # type: ignore[no-any-return]

    def apply(self, docs: list[dict[str, Any]], namespace: str | None = None) -> None:
        args = ["apply", "--server-side", "--force-conflicts", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, stdin=yaml.safe_dump_all(docs))

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        status = self.get("streamcluster", name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def helm_binary() -> pathlib.Path:
    """``helm``, built by ``build.sh`` next to the control plane's binaries."""
    return controlplane.binaries().parent / f"helm-v{os.environ.get('HELM_VERSION', '3.22.0')}" / "helm"


def example(s3: MotoServer) -> list[dict[str, Any]]:
    """examples/streamcluster.yaml with its endpoint on the host's moto."""
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "streamcluster.yaml").read_text()) if d]
    for doc in docs:
        if doc["kind"] == "StreamCluster":
            doc["spec"]["storage"]["endpoint"] = f"http://localhost:{s3.port}"
    return docs


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def broker_ips(kube: Cluster, name: str) -> list[str]:
    pods = kube.items("pods", "-l", f"app.kubernetes.io/instance={name}")
    return [p["status"]["podIP"] for p in pods if is_ready(p)]
