"""Scenario 1 on a real control plane: install the operator, run a StreamCluster, use it with kcat.

What runs (``make e2e-k8s``):

* etcd, kube-apiserver and kube-controller-manager built from source
  (``controlplane.py``), the kubelet stand-in (``kubelet.py``) as a process;
* the chart's CRDs and its rendered RBAC and ServiceAccount (helm-python-sdk,
  as ``helm template`` would), applied with ``kubectl apply --server-side``;
* the operator as a local process (``floe operator run``) authenticated with
  a token of the chart's ServiceAccount (``kubectl create token``), so the
  chart's RBAC is what it runs with;
* moto as the S3 store, on the host (``localhost``, which the kubelet stand-in
  leaves pointing at the host).

Then, as a user would: ``kubectl apply`` of ``examples/streamcluster.yaml``
(its endpoint pointed at moto), brokers come up as pods, kcat produces and
consumes through a broker's advertised address, ``kubectl get
streamclusters`` shows it Running and Ready, ``kubectl describe`` shows
Normal Events, ``kubectl get fsc`` finds it while ``sc`` stays StorageClass,
a StreamCluster created before its Secret becomes Ready once the Secret
exists (ten times, none stuck), and ``kubectl scale`` on an autoscaled
cluster gives a Warning.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
VENV_BIN = pathlib.Path(sys.executable).parent

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None or shutil.which("go") is None,
                                reason="needs kubectl and Go")


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
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=self.env,
                              check=check, timeout=60)  # fmt: skip

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]

    def apply(self, docs: list[dict[str, Any]], namespace: str | None = None) -> None:
        args = ["apply", "--server-side", "--force-conflicts", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, stdin=yaml.safe_dump_all(docs))

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        status = self.get("streamcluster", name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def workdir() -> Iterator[pathlib.Path]:
    path = pathlib.Path(tempfile.mkdtemp(prefix="floe-k8s-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def plane(workdir: pathlib.Path) -> Iterator[controlplane.ControlPlane]:
    with controlplane.ControlPlane(workdir / "plane") as plane:
        yield plane


@pytest.fixture(scope="module")
def kube(plane: controlplane.ControlPlane, workdir: pathlib.Path) -> Iterator[Cluster]:
    """The control plane plus the kubelet stand-in: a one-node cluster."""
    log = open(workdir / "kubelet.log", "wb")  # noqa: SIM115
    kubelet = subprocess.Popen(
        [sys.executable, str(pathlib.Path(__file__).parent / "kubelet.py"), "--kubeconfig", str(plane.kubeconfig),
         "--workdir", str(workdir / "node")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
    )  # fmt: skip
    cluster = Cluster(plane.kubeconfig)
    try:
        eventually(lambda: "Ready" in cluster.kubectl("get", "nodes").stdout, within=60, what="node Ready")
        # The controller manager creates each namespace's default ServiceAccount; pods need it.
        cluster.kubectl("create", "namespace", NAMESPACE)
        yield cluster
    finally:
        _stop(kubelet, signal.SIGINT, wait=60)  # SIGINT: it stops its pods first
        log.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with MotoServer(bucket="floe", auth=False) as server:
        yield server


def render_chart() -> list[dict[str, Any]]:
    import helm_python as helm

    chart = helm.Chart.load(str(ROOT / "charts" / "floe-operator"))
    out = chart.render({}, name="floe", namespace=OPERATOR_NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@pytest.fixture(scope="module")
def operator(kube: Cluster, plane: controlplane.ControlPlane, workdir: pathlib.Path) -> Iterator[None]:
    """The chart installed, its operator running locally as the chart's ServiceAccount."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "charts/floe-operator/crds").glob("*.yaml"))]
    kube.apply(crds)
    kube.kubectl("wait", "--for=condition=Established", "crd/streamclusters.floe.dev", "crd/streamusers.floe.dev")
    kube.kubectl("create", "namespace", OPERATOR_NAMESPACE)
    docs = render_chart()
    kube.apply([d for d in docs if d["kind"] != "Deployment"], namespace=OPERATOR_NAMESPACE)
    (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    token = kube.kubectl("create", "token", account, "-n", OPERATOR_NAMESPACE, "--duration", "2h").stdout.strip()
    operator_config = workdir / "operator.kubeconfig"
    plane.write_kubeconfig(operator_config, user={"token": token})
    log = open(workdir / "operator.log", "wb")  # noqa: SIM115
    env = {**os.environ, "KUBECONFIG": str(operator_config), "FLOE_OPERATOR_LOG_FORMAT": "console",
           "FLOE_OPERATOR_RETRY_DELAY_SECONDS": "2"}  # fmt: skip
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.Popen([str(VENV_BIN / "floe"), "operator", "run", "--liveness", ""], stdout=log,
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        yield
    finally:
        _stop(proc)
        log.close()


def example(s3: MotoServer) -> list[dict[str, Any]]:
    """examples/streamcluster.yaml with its endpoint on the host's moto."""
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "streamcluster.yaml").read_text()) if d]
    for doc in docs:
        if doc["kind"] == "StreamCluster":
            doc["spec"]["storage"]["endpoint"] = f"http://localhost:{s3.port}"
    return docs


def broker_ips(kube: Cluster, name: str) -> list[str]:
    pods = json.loads(kube.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={name}",
                                   "-o", "json").stdout)["items"]  # fmt: skip
    return [p["status"]["podIP"] for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


def test_example_cluster_runs_and_serves_kcat(kube: Cluster, operator: None, s3: MotoServer) -> None:
    kube.apply(example(s3), namespace=NAMESPACE)
    eventually(lambda: len(broker_ips(kube, "demo")) == 3, within=240, what="3 broker pods Ready")
    eventually(lambda: (kube.get("streamcluster", "demo").get("status") or {}).get("phase") == "Running",
               what="StreamCluster Running")  # fmt: skip
    assert kube.condition("demo", "Ready")["status"] == "True"  # type: ignore[index]
    table = kube.kubectl("get", "streamclusters", "-n", NAMESPACE).stdout
    assert "demo" in table and "Running" in table

    bootstrap = f"{broker_ips(kube, 'demo')[0]}:9092"
    messages = [f"message-{i}" for i in range(20)]
    subprocess.run(["kcat", "-b", bootstrap, "-t", "e2e", "-P", "-X", "topic.request.required.acks=-1"],
                   input="\n".join(messages) + "\n", text=True, check=True, timeout=60)  # fmt: skip
    consumed = subprocess.run(["kcat", "-b", bootstrap, "-t", "e2e", "-C", "-o", "beginning", "-e", "-q"],
                              capture_output=True, text=True, check=True, timeout=60).stdout.split()  # fmt: skip
    assert sorted(consumed) == sorted(messages)


def test_short_name_fsc_and_sc_is_still_storageclass(kube: Cluster, operator: None) -> None:
    found = kube.kubectl("get", "fsc", "-n", NAMESPACE)
    assert "demo" in found.stdout and "Warning" not in found.stderr
    resources = kube.kubectl("api-resources", "--no-headers").stdout.splitlines()
    claims = [line.split()[0] for line in resources if " sc " in f" {line} " or line.split()[1:2] == ["sc"]]
    assert claims == ["storageclasses"], claims
    storage = kube.kubectl("get", "sc", "demo", "-n", NAMESPACE, check=False)
    assert "storageclasses.storage.k8s.io \"demo\" not found" in storage.stderr


def test_describe_shows_normal_events(kube: Cluster, operator: None) -> None:
    described = eventually(lambda: (out := kube.kubectl("describe", "streamcluster", "demo", "-n", NAMESPACE).stdout)
                           and "Reconciled" in out and out, what="a Reconciled Event")  # fmt: skip
    assert any(line.split()[:2] == ["Normal", "Reconciled"] for line in described.splitlines()), described


def test_cluster_created_before_its_secret_recovers_every_time(kube: Cluster, operator: None, s3: MotoServer) -> None:
    for attempt in range(10):
        name = f"late-{attempt}"
        docs = example(s3)
        secret = next(d for d in docs if d["kind"] == "Secret")
        cluster = next(d for d in docs if d["kind"] == "StreamCluster")
        secret["metadata"]["name"] = f"{name}-s3"
        cluster["metadata"]["name"] = name
        cluster["spec"]["storage"]["credentialsSecretRef"]["name"] = f"{name}-s3"
        cluster["spec"]["brokers"]["replicas"] = 0  # the race is in the status, not in the pods
        kube.apply([cluster], namespace=NAMESPACE)
        def degraded(name: str = name) -> bool:
            return (kube.condition(name, "Degraded") or {}).get("reason") == "MissingSecret"

        eventually(degraded, what=f"{name} Degraded")
        kube.apply([secret], namespace=NAMESPACE)

        def recovered(name: str = name) -> bool:
            status = kube.get("streamcluster", name).get("status") or {}
            condition: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c["type"] == "Degraded"), {})
            return status.get("phase") == "Running" and condition.get("status") == "False" and bool(
                status.get("bootstrapServers"))

        eventually(recovered, within=90, what=f"{name} Running with a bootstrap address (attempt {attempt + 1})")
        kube.kubectl("delete", "streamcluster", name, "-n", NAMESPACE, "--wait=false")


def test_kubectl_scale_on_an_autoscaled_cluster_warns(kube: Cluster, operator: None) -> None:
    kube.kubectl("patch", "streamcluster", "demo", "-n", NAMESPACE, "--type", "merge", "-p",
                 json.dumps({"spec": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 4}}}))
    eventually(lambda: kube.get("hpa", "demo-broker"), what="the HPA")
    eventually(lambda: (kube.get("streamcluster", "demo").get("status") or {}).get("autoscaling") is True,
               what="status.autoscaling")  # fmt: skip
    kube.kubectl("scale", "streamcluster", "demo", "-n", NAMESPACE, "--replicas", "5")
    ignored = eventually(lambda: kube.condition("demo", "ScaleIgnored"), what="ScaleIgnored condition")
    assert ignored["status"] == "True" and "HorizontalPodAutoscaler demo-broker" in ignored["message"]
    described = eventually(lambda: (out := kube.kubectl("describe", "streamcluster", "demo", "-n", NAMESPACE).stdout)
                           and "ScaleIgnored" in out and out, what="a ScaleIgnored Event")  # fmt: skip
    assert any(line.split()[:2] == ["Warning", "ScaleIgnored"] for line in described.splitlines()), described
    assert kube.get("deployment", "demo-broker")["spec"]["replicas"] == 3
