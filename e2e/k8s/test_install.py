"""Scenario 1 on a real control plane: install the operator, run a StreamCluster, use it with kcat.

What runs (``make e2e-k8s``):

* etcd, kube-apiserver and kube-controller-manager built from source
  (``controlplane.py``), the kubelet stand-in (``kubelet.py``) as a process;
* ``helm install`` of ``charts/floe-operator`` with a real helm (built by
  ``build.sh`` like the rest): its CRDs, RBAC, ServiceAccount and the
  operator's Deployment, whose pod the kubelet stand-in runs with its
  ServiceAccount's token, so the chart's RBAC is what it runs with;
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

Last, the traffic spike of ``make spike`` (``k8s_spike.py`` reuses
``e2e/spike.py``'s producer, consumer group, checker, summary and plot):
Debian's Prometheus (scraping the broker and operator pods, found through the
API server), the chart's metrics adapter as a pod behind its APIServices, an
autoscaled StreamCluster from 2 brokers at a base rate; the rate rises 5x,
the real HPA controller scales the Deployment out, the operator's rebalance
loop moves partition leaders onto the new brokers, and when the rate drops
back the HPA scales in and the removed brokers drain on SIGTERM. The
checker's verdict (no acknowledged record lost, the consumer group caught
up) is in the summary, ``e2e/out/k8s-spike.json``, next to its plot. Then
every query of the chart's dashboard and every alert expression must return
data from that Prometheus. The operator reaches the brokers' admin API
through ``serviceproxy.py`` (nothing routes Service IPs here).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import controlplane
import k8s_spike
import pytest
import spike  # e2e/spike.py, which k8s_spike puts on the path
import yaml
from harness import (
    CHART,
    NAMESPACE,
    OPERATOR_NAMESPACE,
    ROOT,
    Cluster,
    broker_ips,
    eventually,
    example,
    needs_kubernetes,
)
from harness import stop_process as _stop

from tests.infra import monitoring
from tests.infra.moto_server import MotoServer

pytestmark = needs_kubernetes


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


def test_a_container_failing_its_liveness_probe_is_restarted(kube: Cluster) -> None:
    """The kubelet stand-in runs liveness probes as the kubelet does: a pod whose probe path
    answers 404 is restarted (its restartCount rises), one whose probe passes is left alone."""

    def pod(name: str, live_path: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "web", "image": "python",
                    "command": ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"],
                    "ports": [{"name": "http", "containerPort": 8000}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": live_path, "port": "http"}, "periodSeconds": 1,
                                      "failureThreshold": 2}}]}}  # fmt: skip

    kube.apply([pod("live-fails", "/no-such-page"), pod("live-passes", "/")], namespace=NAMESPACE)

    def restarts(name: str) -> int:
        statuses = (kube.get("pod", name).get("status") or {}).get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    eventually(lambda: restarts("live-fails") >= 1, within=90, what="the failing pod restarted")
    assert restarts("live-passes") == 0
    kube.kubectl("delete", "pod", "live-fails", "live-passes", "-n", NAMESPACE, "--wait=false")


# --- the traffic spike: the real HPA controller, Prometheus, the metrics adapter ---------------

SPIKE = "spike"
SPIKE_TOPIC = "spike"
METRIC = "floe_broker_bytes_in_per_second"
TIMELINE = ROOT / "e2e" / "out" / "k8s-hpa-spike.json"  # the figures in docs/benchmarks.md


def scrape_targets(kube: Cluster) -> list[dict[str, Any]]:
    """Prometheus' Kubernetes pod discovery with the usual prometheus.io relabelling, as file_sd targets."""
    pods = json.loads(kube.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    targets = []
    for pod in pods:
        notes = pod["metadata"].get("annotations") or {}
        ip = (pod.get("status") or {}).get("podIP")
        if notes.get("prometheus.io/scrape") != "true" or not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        targets.append({"targets": [f"{ip}:{notes.get('prometheus.io/port', '80')}"], "labels": {
            "namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"],
            "__metrics_path__": notes.get("prometheus.io/path", "/metrics")}})  # fmt: skip
    return targets


@pytest.fixture(scope="module")
def prometheus(kube: Cluster, workdir: pathlib.Path) -> Iterator[str]:
    """Debian's Prometheus scraping the broker pods, labelled ``namespace`` and ``pod`` as in a cluster.

    Debian builds Prometheus without Kubernetes service discovery, so a
    thread stands in for it: it lists the pods every second and writes
    their prometheus.io-annotated addresses as a file_sd target file.
    """
    import threading

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("needs Debian's prometheus (apt-get install prometheus)")
    port = controlplane.free_port()
    targets = workdir / "targets.json"
    targets.write_text("[]")
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [{"job_name": "pods", "file_sd_configs": [{"files": [str(targets)],
                                                                     "refresh_interval": "2s"}]}],
    }))  # fmt: skip
    stop = threading.Event()

    def discover() -> None:
        while not stop.wait(1.0):
            try:
                found = json.dumps(scrape_targets(kube))
            except (subprocess.SubprocessError, ValueError, KeyError):
                continue
            if found != targets.read_text():
                tmp = targets.with_suffix(".tmp")
                tmp.write_text(found)
                tmp.replace(targets)

    discovery = threading.Thread(target=discover, daemon=True)
    discovery.start()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        eventually(ready, within=60, what="Prometheus ready")
        # localhost, not 127.0.0.1: inside a pod the kubelet stand-in makes 127.0.0.1 the pod's own address.
        yield f"http://localhost:{port}"
    finally:
        stop.set()
        discovery.join(10)
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def metrics_adapter(
    kube: Cluster, operator: None, helm: Callable[..., subprocess.CompletedProcess[str]], prometheus: str
) -> Iterator[None]:
    """``helm upgrade`` turning the chart's metrics adapter on: a pod, registered for both metrics APIs."""
    helm("upgrade", "floe", str(CHART), "-n", OPERATOR_NAMESPACE, "--reuse-values",
         "--set", "metricsAdapter.enabled=true", "--set", f"metricsAdapter.prometheusUrl={prometheus}",
         "--set", "metricsAdapter.rateWindow=20s")  # fmt: skip

    # kube-proxy's part: the chart's ClusterIP Service routes nowhere here (and EndpointSlices
    # refuse loopback addresses), so both APIServices are pointed at an ExternalName Service
    # naming the adapter pod's address, which the aggregator dials as it is.
    selector = "app.kubernetes.io/name=floe-metrics-adapter"
    pod_ip = eventually(lambda: (ips := [p["status"]["podIP"] for p in json.loads(kube.kubectl(
        "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", selector, "-o", "json").stdout)["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])])
        and ips[0], within=120, what="the metrics adapter pod Ready")  # fmt: skip
    kube.apply([{"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "metrics-adapter-pod", "namespace": OPERATOR_NAMESPACE},
                 "spec": {"type": "ExternalName", "externalName": pod_ip,
                          "ports": [{"name": "https", "port": 6443}]}}])  # fmt: skip
    for name in ("v1beta2.custom.metrics.k8s.io", "v1beta1.metrics.k8s.io"):
        kube.kubectl("patch", "apiservice", name, "--type", "merge", "-p", json.dumps(
            {"spec": {"service": {"name": "metrics-adapter-pod", "namespace": OPERATOR_NAMESPACE, "port": 6443}}}))

    def available(name: str) -> bool:
        conditions = (kube.get("apiservice", name, namespace="").get("status") or {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    eventually(lambda: available("v1beta2.custom.metrics.k8s.io") and available("v1beta1.metrics.k8s.io"),
               within=180, what="the metrics adapter's APIServices Available")  # fmt: skip
    yield


def spike_cluster(s3: MotoServer, prometheus: str) -> list[dict[str, Any]]:
    """The example's Secret and an autoscaled, rebalanced StreamCluster from 2 brokers."""
    secret, cluster = (next(d for d in example(s3) if d["kind"] == kind) for kind in ("Secret", "StreamCluster"))
    cluster["metadata"]["name"] = SPIKE
    cluster["spec"]["brokers"]["replicas"] = 2
    # The scenario scales on bytes in. The HPA also keeps its CPU metric (the operator always sets
    # one), and with the example's 250m request an idle broker here (heartbeats, scrapes, the
    # rebalance loop's queries: about 170m on a quiet machine) alone holds 3 replicas; so the
    # request is the machine's two cores and CPU never decides.
    cluster["spec"]["brokers"]["resources"] = {"requests": {"cpu": "2", "memory": "512Mi"},
                                               "limits": {"memory": "1Gi"}}
    cluster["spec"]["autoscaling"] = {
        "enabled": True, "minReplicas": 2, "maxReplicas": 4, "bytesInPerBroker": "200Ki",
        # Scale in soon after the rate drops, one broker per 15 s (as make spike drains one at a time).
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15, "selectPolicy": "Max",
                                   "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}},
    }  # fmt: skip
    cluster["spec"]["rebalance"] = {
        "enabled": True, "prometheusUrl": prometheus, "intervalSeconds": 5, "window": "20s",
        "metricsSelector": f'namespace="{NAMESPACE}",pod=~"{SPIKE}-broker-.*"',
    }  # fmt: skip
    # No consolidation during the run, as in make spike: any data/ object written is then a move copying records.
    cluster["spec"]["config"] = {**cluster["spec"].get("config", {}), "compactAfterBytes": 1 << 40,
                                 "compactAfterMs": 10**9}  # fmt: skip
    return [secret, cluster]


def leaders(bootstrap_ips: list[str]) -> tuple[set[int], dict[int, int]]:
    """The brokers in the metadata and each partition's leader, as a Kafka client sees them."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ",".join(f"{ip}:9092" for ip in bootstrap_ips)})
    try:
        meta = admin.list_topics(SPIKE_TOPIC, timeout=10)
    except KafkaException as exc:  # a broker leaving mid-call: ask again
        raise ValueError(str(exc)) from exc
    return set(meta.brokers), {p: part.leader for p, part in meta.topics[SPIKE_TOPIC].partitions.items()}

PRESET = spike.Preset(
    # 2 brokers at 200 KiB/s each are at rest at 0.2 MB/s; 1 MB/s (5x) asks the HPA for 5, capped at 4.
    base_mb=0.2, spike_mb=1.0, base_s=10, spike_s=0, after_s=0, target_mb=200 * 1024 / 1e6, interval=5,
    rate_window=20, balance_window=0, scale_down_window=15, scale_down_policy="Pods:1:15",
)  # fmt: skip
SPIKE_PARTITIONS = 12
SPIKE_OUT = ROOT / "e2e" / "out"  # k8s-spike.json (the summary), .png, .csv: the README's "On Kubernetes"
SPIKE_WINDOW: dict[str, float] = {}  # wall-clock start and end of the spike run, for the Prometheus checks


@pytest.mark.timeout(900)  # the fixtures start Prometheus and the adapter; the spike itself takes minutes
def test_hpa_scales_out_under_a_spike_and_back_in(
    kube: Cluster, operator: None, metrics_adapter: None, s3: MotoServer, prometheus: str, workdir: pathlib.Path
) -> None:
    import base64

    from confluent_kafka.admin import AdminClient, NewTopic

    kube.kubectl("delete", "streamcluster", "demo", "-n", NAMESPACE, "--wait=false", check=False)  # two cores
    kube.apply(spike_cluster(s3, prometheus), namespace=NAMESPACE)
    eventually(lambda: len(broker_ips(kube, SPIKE)) == 2, within=240, what="2 spike brokers Ready")
    ips = broker_ips(kube, SPIKE)
    bootstrap = ",".join(f"{ip}:9092" for ip in ips)
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its future resolves
    admin.create_topics([NewTopic(SPIKE_TOPIC, SPIKE_PARTITIONS)])[SPIKE_TOPIC].result(60)
    first_brokers, _ = eventually(lambda: (got := leaders(ips)) and len(got[1]) == SPIKE_PARTITIONS and got,
                                  what="the topic's partitions led")  # fmt: skip

    # What a user sees before the spike: the custom metric through the aggregation layer, and an HPA at rest.
    selector = f"app.kubernetes.io/instance={SPIKE}"
    raw = eventually(lambda: (out := json.loads(kube.kubectl(
        "get", "--raw", f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{METRIC}"
        f"?labelSelector={selector}").stdout)) and len(out["items"]) == 2 and out, within=90,
        what="the custom metric for both brokers")  # fmt: skip
    assert {i["describedObject"]["name"] for i in raw["items"]} == {
        p["metadata"]["name"] for p in json.loads(kube.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector,
                                                               "-o", "json").stdout)["items"]}  # fmt: skip
    top = ("top", "pods", "-n", NAMESPACE, "-l", selector)
    eventually(lambda: kube.kubectl(*top).stdout.count(f"{SPIKE}-broker") == 2,
               within=90, what="kubectl top pods (metrics.k8s.io) for both brokers")  # fmt: skip

    # The sampler reads the brokers' /v1/cluster, which wants the cluster's admin token.
    secret = kube.get("secret", f"{SPIKE}-cluster-secrets")
    token = workdir / "spike-admin-token"
    token.write_bytes(base64.b64decode(secret["data"]["admin-token"]))
    spike.ADMIN_TOKEN_FILE = token

    def hpa() -> dict[str, Any]:
        return kube.get("hpa", f"{SPIKE}-broker")

    def sampler(**kw: Any) -> k8s_spike.PodSampler:
        return k8s_spike.PodSampler(kubectl=kube.kubectl, namespace=NAMESPACE, name=SPIKE,
                                    kubelet_log=workdir / "kubelet.log", state=workdir, **kw)  # fmt: skip

    run = k8s_spike.Spike(bootstrap=bootstrap, sampler_factory=sampler, partitions=SPIKE_PARTITIONS, preset=PRESET,
                          out=SPIKE_OUT, state=workdir)  # fmt: skip
    watch = run.sampler

    def ready() -> list[dict[str, Any]]:
        return [r for r in watch.brokers() if r["state"] == "ready"]

    def spike_leaders() -> set[int]:
        return {node for (topic, _), node in watch.leaders.items() if topic == SPIKE_TOPIC}

    timeline: dict[str, float] = {}
    SPIKE_WINDOW["start"] = time.time()
    run.start()
    try:
        run.run_until(lambda: time.time() - run.t0 >= PRESET.base_s, within=PRESET.base_s + 30, what="the base phase")
        assert (watch.replicas, len(ready())) == (2, 2), "the HPA scaled before the spike"
        run.enter("spike")
        start = time.monotonic()
        try:
            run.run_until(lambda: (watch.replicas or 0) > 2, within=180, what="the HPA scaling the brokers out")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; HPA status: {json.dumps(hpa().get('status'))}") from None
        timeline["scale_out_seconds"] = time.monotonic() - start
        run.run_until(lambda: len(ready()) > 2, within=180, what="a new broker Ready")
        timeline["new_broker_ready_seconds"] = time.monotonic() - start
        run.run_until(lambda: spike_leaders() - first_brokers, within=180,
                      what="a partition leader moved to a new broker")  # fmt: skip
        timeline["first_move_seconds"] = time.monotonic() - start
        run.run_until(lambda: watch.replicas == 4 and len(ready()) == 4, within=240, what="4 brokers Ready")
        run.run_until(lambda: len(spike_leaders()) >= 3, within=120, what="leaders on 3 or more brokers")
        timeline["peak_brokers"] = 4
        timeline["load_seconds"] = time.monotonic() - start
        run.enter("after")
        stop = time.monotonic()

        def scaled_in() -> bool:
            live = {r["node"] for r in ready()}
            return (watch.replicas == 2 and len(watch.brokers()) == 2 and len(live) == 2
                    and spike_leaders() <= live and len(watch.leaders) > 0)  # fmt: skip

        try:
            run.run_until(scaled_in, within=240, what="scaled back in to 2 brokers leading every partition")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; HPA status: {json.dumps(hpa().get('status'))}") from None
        timeline["scale_in_seconds_after_load"] = time.monotonic() - stop
        run.finish()
    finally:
        run.stop()
        SPIKE_WINDOW["end"] = time.time()

    # As a Kafka client sees it: 2 brokers, every partition led by one of them.
    brokers, led = eventually(lambda: (got := leaders(broker_ips(kube, SPIKE))) and len(got[0]) == 2 and got,
                              what="2 brokers in the metadata")  # fmt: skip
    assert set(led.values()) <= brokers and len(led) == SPIKE_PARTITIONS

    summary = run.summary(
        scenario="real control plane: kube-apiserver, kube-controller-manager (HPA), the chart's operator and "
                 "metrics adapter, Debian's Prometheus",
        hpa_timeline={k: round(v, 1) for k, v in timeline.items()},
        load_average_1m=round(os.getloadavg()[0], 1),
    )  # fmt: skip
    SPIKE_OUT.mkdir(parents=True, exist_ok=True)
    (SPIKE_OUT / "k8s-spike.json").write_text(json.dumps(summary, indent=2) + "\n")
    figures = {**summary["hpa_timeline"], "acked_records": summary["acked"], "load_average_1m": os.getloadavg()[0]}
    TIMELINE.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nHPA spike summary: {json.dumps(summary)}")

    # The checker's verdict, as for make spike: nothing acknowledged lost, the consumer group caught up.
    assert summary["lost"] == 0, summary["lost_by_partition"]
    assert summary["delivery_errors"] == 0, summary["delivery_error_kinds"]
    assert summary["consumer_caught_up"], summary
    assert summary["checker"]["verdict"] == "pass"
    assert (summary["brokers_max"], summary["brokers_final"]) == (4, 2), summary
    assert summary["drains"] >= 2 and summary["drain_exit_codes"] == [0], summary
    assert summary["record_bytes_copied"] == 0, summary


# --- the chart's dashboard and alerts against the spike's Prometheus -------------------------------


def prometheus_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "5"})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=30) as resp:
        body = json.load(resp)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_hpa_spike_prometheus_answers_every_dashboard_query_and_alert(prometheus: str) -> None:
    """Every query of the chart's dashboard, and every alert expression, returns data from the spike.

    An alert is normally quiet, so an empty alert expression passes when the
    same expression without its threshold comparison returns series (the
    thing it compares exists where Floe runs). Runs right after the spike,
    while its Prometheus is still up.
    """
    if "end" not in SPIKE_WINDOW:
        pytest.fail("needs test_hpa_scales_out_under_a_spike_and_back_in to have run first (its Prometheus data)")
    start, end = SPIKE_WINDOW["start"], time.time()
    variables = {"namespace": NAMESPACE, "streamcluster": SPIKE, "__rate_interval": "20s"}
    empty = [f"{q.where}: {q.expr}" for q in monitoring.dashboard_queries(variables)
             if not prometheus_range(prometheus, q.expr, start, end)]  # fmt: skip
    for q in monitoring.rule_queries():
        if prometheus_range(prometheus, q.expr, start, end):
            continue
        base = monitoring.without_comparison(q.expr)
        if not prometheus_range(prometheus, base, start, end):
            empty.append(f"{q.where} (without its threshold): {base}")
    assert not empty, "queries that returned nothing from the spike's Prometheus:\n" + "\n".join(empty)
