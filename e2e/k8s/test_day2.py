"""Day-2 operations on a real control plane, as an operator of a Floe cluster runs them.

The same tier as ``test_install.py`` (its own control plane, kubelet
stand-in, moto and ``helm install`` of the chart, from ``conftest.py``), then,
in order, on one StreamCluster ``day2`` (2 brokers, 6 partitions, the
rebalance loop on with no Prometheus, so it balances partition counts):

1. a spec the CRD's schema refuses, refused by ``kubectl apply`` with the
   field and the reason; a schema-valid but contradictory one shown as
   ``Degraded`` with what to change, and nothing created for it;
2. ``spec.image`` changed: the Deployment rolls the brokers one at a time;
   every old broker drains on SIGTERM and exits 0, the brokers that are
   available never fall below what the PodDisruptionBudget allows (watched
   through the API), and a producer/consumer checker loses nothing;
3. ``kubectl scale`` to 3 brokers and the operator pod deleted as soon as
   its rebalance plan shows in the status: the Deployment brings a new
   operator, the cluster ends Ready with leaders spread over all 3 brokers;
4. a broker pod force-deleted (its process SIGKILLed, no drain): the
   ReplicaSet replaces it, its partitions fail over and the producer's acks
   resume on them (the times are printed, not asserted);
5. ``kubectl delete streamcluster``: the garbage collector removes every
   object it owned and the brokers' processes end; ``helm uninstall``
   removes the operator and its process ends.
"""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import podprocesses
import pytest
from harness import NAMESPACE, OPERATOR_NAMESPACE, Cluster, broker_ips, eventually, example, is_ready, needs_kubernetes

from tests.infra.moto_server import MotoServer

pytestmark = needs_kubernetes

DAY2 = "day2"
TOPIC = "day2"
PARTITIONS = 6
SELECTOR = f"app.kubernetes.io/instance={DAY2}"
NEW_IMAGE = "ghcr.io/floe-dev/floe:day2-rollout"
OPERATOR_SELECTOR = "app.kubernetes.io/name=floe-operator"


def day2_cluster(s3: MotoServer) -> list[dict[str, Any]]:
    """The example's Secret and a 2-broker StreamCluster whose rebalance loop balances partition counts."""
    secret, cluster = (next(d for d in example(s3) if d["kind"] == kind) for kind in ("Secret", "StreamCluster"))
    secret["metadata"]["name"] = f"{DAY2}-s3"
    cluster["metadata"]["name"] = DAY2
    cluster["spec"]["storage"]["credentialsSecretRef"]["name"] = f"{DAY2}-s3"
    cluster["spec"]["brokers"]["replicas"] = 2
    # A drain takes seconds, but brokers on a machine this loaded can stall for tens of them; the
    # grace period is what a drain may take before the kubelet kills it, and this test wants drains.
    cluster["spec"]["brokers"]["terminationGracePeriodSeconds"] = 240
    # No Prometheus answers here (port 1), so the loop balances counts for new and draining brokers.
    cluster["spec"]["rebalance"] = {"enabled": True, "prometheusUrl": "http://localhost:1", "intervalSeconds": 2}
    return [secret, cluster]


class Traffic:
    """An idempotent acks=all producer and a consumer group, in threads: the checker's two sides.

    Every value is unique; what was acknowledged must be consumed. Each
    acknowledgement's time and partition is kept, so a scenario can tell when
    acks resumed on the partitions it disturbed.
    """

    def __init__(self, kube: Cluster, group: str, *, per_second: int = 100) -> None:
        from confluent_kafka import Consumer, Producer

        bootstrap = ",".join(f"{ip}:9092" for ip in broker_ips(kube, DAY2))
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 10, "message.timeout.ms": 180000})  # fmt: skip
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest"})  # fmt: skip
        self.consumer.subscribe([TOPIC])
        self.per_second = per_second
        self.prefix = group
        self.acked: set[bytes] = set()
        self.acks: list[tuple[float, int]] = []  # (monotonic time, partition)
        self.errors: list[str] = []  # delivery failures: not acknowledged, so not lost, but a user saw them
        self.refused: list[str] = []  # produce() calls the client refused locally, retried
        self.consumed: set[bytes] = set()
        self.producing = threading.Event()
        self.consuming = threading.Event()
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]  # fmt: skip

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked.add(msg.value() or b"")
            self.acks.append((time.monotonic(), msg.partition()))
        else:
            self.errors.append(str(err))

    def _produce(self) -> None:
        from confluent_kafka import KafkaException

        start, sent = time.monotonic(), 0
        while not self.producing.is_set():
            due = int((time.monotonic() - start) * self.per_second)
            while sent < due:
                try:
                    self.producer.produce(TOPIC, f"{self.prefix}-{sent}".encode(), key=str(sent).encode(),
                                          on_delivery=self._delivered)  # fmt: skip
                    sent += 1
                except BufferError:
                    break
                except KafkaException as exc:  # refused before sending (e.g. the topic looked unknown): retry it
                    self.refused.append(str(exc))
                    break
            self.producer.poll(0.05)
        self.producer.flush(180)

    def _consume(self) -> None:
        while not self.consuming.is_set():
            msg = self.consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                self.consumed.add(msg.value() or b"")
        self.consumer.close()

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        eventually(lambda: len(self.acked) >= 20, within=60, what="the first acks")
        return self

    def check(self) -> int:
        """Stop producing; the consumer must then see every acknowledged record. Returns how many."""
        self.producing.set()
        self.threads[0].join(200)
        eventually(lambda: self.acked <= self.consumed, within=120,
                   what=f"the consumer reading every acknowledged record ({len(self.acked - self.consumed)} missing)")
        return len(self.acked)

    def __exit__(self, *exc: object) -> None:
        self.producing.set()
        self.consuming.set()
        for thread in self.threads:
            thread.join(200)


class PodWatch:
    """A watch on the cluster's broker pods: how many were available at every change, and how each ended.

    Available means Ready and not being deleted, as the PodDisruptionBudget
    counts healthy pods. The exit codes are what the kubelet reports in a
    container's ``terminated`` state before the pod goes.
    """

    def __init__(self, kube: Cluster) -> None:
        self.api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kube.kubeconfig)))
        self.pods: dict[str, dict[str, Any]] = {}
        self.available: list[int] = []
        self.exits: dict[str, int] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _list(self) -> str:
        """The pods as they are now (no availability recorded for a half-read listing); the list's version."""
        listing: Any = self.api.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR, _preload_content=False)
        body = json.loads(listing.data)  # the raw answer, as the watch's events are
        self.pods = {p["metadata"]["name"]: p for p in body["items"]}
        self._count()
        return str(body["metadata"]["resourceVersion"])

    def _count(self) -> None:
        self.available.append(sum(1 for p in self.pods.values()
                                  if is_ready(p) and not p["metadata"].get("deletionTimestamp")))  # fmt: skip

    def _run(self) -> None:
        version = ""
        while not self.stopping.is_set():
            watch = kubernetes.watch.Watch()
            try:
                version = version or self._list()
                for event in watch.stream(self.api.list_namespaced_pod, NAMESPACE, label_selector=SELECTOR,
                                          resource_version=version, timeout_seconds=5):  # fmt: skip
                    if event["type"] == "ERROR":  # the version expired: list again
                        version = ""
                        break
                    pod = event["raw_object"]
                    version = pod["metadata"]["resourceVersion"]
                    name = pod["metadata"]["name"]
                    for status in (pod.get("status") or {}).get("containerStatuses") or []:
                        if "terminated" in (status.get("state") or {}):
                            self.exits[name] = status["state"]["terminated"]["exitCode"]
                    if event["type"] == "DELETED":
                        self.pods.pop(name, None)
                    else:
                        self.pods[name] = pod
                    self._count()
                    if self.stopping.is_set():
                        break
            except (kubernetes.client.ApiException, OSError, ValueError):
                version = ""
                self.stopping.wait(0.5)

    def __enter__(self) -> PodWatch:
        self.thread.start()
        eventually(lambda: self.available, within=30, what="the pod watch's first event")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(15)


def metadata(kube: Cluster) -> Any:
    """The topic's metadata, as a Kafka client sees it."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ",".join(f"{ip}:9092" for ip in broker_ips(kube, DAY2))})
    try:
        return admin.list_topics(TOPIC, timeout=10)
    except KafkaException as exc:  # a broker leaving mid-call: ask again
        raise ValueError(str(exc)) from exc


def leaders(kube: Cluster) -> dict[int, int]:
    """Each partition's leader."""
    return {p: part.leader for p, part in metadata(kube).topics[TOPIC].partitions.items() if part.leader >= 0}


def led_by(kube: Cluster, ips: set[str]) -> dict[int, int] | None:
    """The leaders once every partition is led by a broker at one of ``ips`` (and no other is listed)."""
    meta = metadata(kube)
    brokers = {b.id for b in meta.brokers.values() if b.host in ips}
    led = {p: part.leader for p, part in meta.topics[TOPIC].partitions.items()}
    return led if set(meta.brokers) == brokers and len(led) == PARTITIONS and set(led.values()) <= brokers else None


def balanced(kube: Cluster, brokers: int) -> dict[int, int] | None:
    """Leaders per broker once ``brokers`` brokers each lead a fair part of all partitions, else None.

    The rebalance loop balances partition counts over every topic, the consumer offsets' too, and
    moves as few partitions as it can; "fair" here is at least half the mean, at most 1.5 times it.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ",".join(f"{ip}:9092" for ip in broker_ips(kube, DAY2))})
    try:
        meta = admin.list_topics(timeout=10)
    except KafkaException as exc:
        raise ValueError(str(exc)) from exc
    led = [part.leader for topic in meta.topics.values() for part in topic.partitions.values()]
    counts = {b: led.count(b) for b in meta.brokers}
    mean = len(led) / brokers
    fair = len(counts) == brokers and set(led) <= set(counts) and len(meta.topics[TOPIC].partitions) == PARTITIONS
    return counts if fair and min(counts.values()) >= mean / 2 and max(counts.values()) <= mean * 1.5 else None


def ready_and_running(kube: Cluster) -> bool:
    status = kube.get("streamcluster", DAY2).get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
    return status.get("phase") == "Running" and ready.get("status") == "True"


def pod_processes(node_dir: pathlib.Path) -> set[str]:
    """The pods (by UID: each runs in its own directory) that still have a live process."""
    return {pathlib.Path(f"/proc/{pid}/cwd").resolve().name for pid in podprocesses.find(node_dir)}


def broker_log(node_dir: pathlib.Path, uid: str) -> str:
    path = node_dir / "pods" / uid / "broker.log"
    return path.read_text(errors="replace") if path.exists() else ""


# --- 1. specs the API server or the operator refuses -------------------------------------------


def test_a_spec_the_schema_refuses_gets_a_readable_error(kube: Cluster, operator: None, s3: MotoServer) -> None:
    _, cluster = day2_cluster(s3)
    cluster["metadata"]["name"] = "typo"
    cluster["spec"]["brokers"]["replicas"] = "three"
    refused = kube.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=json.dumps(cluster), check=False)
    assert refused.returncode != 0
    assert 'The StreamCluster "typo" is invalid' in refused.stderr, refused.stderr
    assert "spec.brokers.replicas in body must be of type integer" in refused.stderr, refused.stderr
    assert "typo" not in kube.kubectl("get", "streamclusters", "-n", NAMESPACE).stdout


def test_a_contradictory_spec_is_degraded_with_what_to_change(kube: Cluster, operator: None, s3: MotoServer) -> None:
    secret, cluster = day2_cluster(s3)
    cluster["metadata"]["name"] = "upside-down"
    cluster["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 5, "maxReplicas": 2}
    kube.apply([secret, cluster], namespace=NAMESPACE)  # the schema has no cross-field rule: accepted
    degraded = eventually(lambda: (c := kube.condition("upside-down", "Degraded")) and c["status"] == "True" and c,
                          what="Degraded")  # fmt: skip
    assert degraded["reason"] == "InvalidSpec", degraded
    assert "minReplicas (5) is greater than maxReplicas (2)" in degraded["message"], degraded
    assert "lower minReplicas or raise maxReplicas" in degraded["message"], degraded
    assert kube.kubectl("get", "deployment", "upside-down-broker", "-n", NAMESPACE, check=False).returncode != 0
    described = kube.kubectl("describe", "streamcluster", "upside-down", "-n", NAMESPACE).stdout
    assert "InvalidSpec" in described, described
    kube.kubectl("delete", "streamcluster", "upside-down", "-n", NAMESPACE)


# --- 2. a rolling update -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def day2(kube: Cluster, operator: None, s3: MotoServer) -> Iterator[None]:
    """The ``day2`` cluster, 2 brokers Ready, with its topic."""
    from confluent_kafka.admin import AdminClient, NewTopic

    kube.apply(day2_cluster(s3), namespace=NAMESPACE)
    eventually(lambda: len(broker_ips(kube, DAY2)) == 2, within=240, what="2 brokers Ready")
    eventually(lambda: ready_and_running(kube), what="day2 Running and Ready")
    admin = AdminClient({"bootstrap.servers": ",".join(f"{ip}:9092" for ip in broker_ips(kube, DAY2))})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS)])[TOPIC].result(60)
    eventually(lambda: led_by(kube, set(broker_ips(kube, DAY2))), what="the topic's partitions led")
    yield


def test_an_image_change_rolls_the_brokers_with_drains(kube: Cluster, day2: None, node_dir: pathlib.Path) -> None:
    old = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kube.items("pods", "-l", SELECTOR)}
    pdb = kube.get("pdb", f"{DAY2}-broker")
    max_unavailable = int(pdb["spec"]["maxUnavailable"])
    started = time.monotonic()
    with Traffic(kube, "day2-rollout") as traffic, PodWatch(kube) as watch:
        kube.kubectl("patch", "streamcluster", DAY2, "-n", NAMESPACE, "--type", "merge", "-p",
                     json.dumps({"spec": {"image": NEW_IMAGE}}))  # fmt: skip
        eventually(lambda: kube.get("deployment", f"{DAY2}-broker")["spec"]["template"]["spec"]["containers"][0]
                   ["image"] == NEW_IMAGE, what="the Deployment's new pod template")  # fmt: skip
        kube.kubectl("rollout", "status", f"deployment/{DAY2}-broker", "-n", NAMESPACE, "--timeout=55s")
        eventually(lambda: not set(old) & {p["metadata"]["name"] for p in kube.items("pods", "-l", SELECTOR)}
                   and len(broker_ips(kube, DAY2)) == 2, within=300, what="both brokers replaced and Ready")
        rolled = time.monotonic() - started
        eventually(lambda: set(old) <= set(watch.exits), within=30, what="both old brokers' exits reported")
        records = traffic.check()
    assert traffic.errors == [], traffic.errors[:5]
    assert {name: watch.exits[name] for name in old} == dict.fromkeys(old, 0), watch.exits
    for name, uid in old.items():
        assert "drained" in broker_log(node_dir, uid), f"{name} exited without draining"
    lowest = min(watch.available)
    assert lowest >= 2 - max_unavailable, (lowest, watch.available)
    pods = kube.items("pods", "-l", SELECTOR)
    assert {c["image"] for p in pods for c in p["status"]["containerStatuses"]} == {NEW_IMAGE}
    eventually(lambda: ready_and_running(kube), what="day2 Running and Ready after the rollout")
    new_ips = {p["status"]["podIP"] for p in pods}
    eventually(lambda: led_by(kube, new_ips), what="every partition led by the new brokers")
    print(f"\nrolling update: {rolled:.1f} s for 2 brokers, fewest available {lowest}, {records} records checked, "
          f"{len(traffic.refused)} produce calls refused by the client and retried {traffic.refused[:1]}")


# --- 3. the operator restarted during a rebalance --------------------------------------------------


def rebalance_status(kube: Cluster) -> dict[str, Any]:
    return (kube.get("streamcluster", DAY2).get("status") or {}).get("rebalance") or {}


class OperatorKiller:
    """Deletes the operator pod the moment a watch on the StreamCluster shows a new plan ``Running``.

    A plan takes about a second here, longer than a watch event takes to
    arrive, so the deletion lands while the plan's moves are in flight.
    ``fire()`` deletes it anyway (when no plan showed in time).
    """

    def __init__(self, kube: Cluster, plans_before: int, pods: list[str]) -> None:
        client = kubernetes.config.new_client_from_config(str(kube.kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.plans_before, self.pods = plans_before, pods
        self.seen: dict[str, Any] | None = None  # the plan it saw running
        self.fired = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def fire(self) -> None:
        if not self.fired.is_set():
            self.fired.set()
            for name in self.pods:
                self.core.delete_namespaced_pod(name, OPERATOR_NAMESPACE)

    def _run(self) -> None:
        while not self.fired.is_set():
            try:
                for event in kubernetes.watch.Watch().stream(
                    self.custom.list_namespaced_custom_object, "floe.dev", "v1alpha1", NAMESPACE, "streamclusters",
                    field_selector=f"metadata.name={DAY2}", timeout_seconds=5,
                ):  # fmt: skip
                    rebalance = (event["raw_object"].get("status") or {}).get("rebalance") or {}
                    plan = rebalance.get("lastPlan") or {}
                    if int(rebalance.get("plans") or 0) > self.plans_before and plan.get("result") == "Running":
                        self.seen = plan
                        self.fire()
                        return
                    if self.fired.is_set():
                        return
            except (kubernetes.client.ApiException, OSError, ValueError):
                self.fired.wait(0.5)

    def __enter__(self) -> OperatorKiller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fired.set()
        self.thread.join(15)


def test_the_operator_restarted_during_a_rebalance(kube: Cluster, day2: None) -> None:
    plans_before = int(rebalance_status(kube).get("plans") or 0)
    first = [p["metadata"]["name"] for p in kube.items("pods", "-l", OPERATOR_SELECTOR, namespace=OPERATOR_NAMESPACE)]
    with Traffic(kube, "day2-restart") as traffic, OperatorKiller(kube, plans_before, first) as killer:
        kube.kubectl("scale", "streamcluster", DAY2, "-n", NAMESPACE, "--replicas", "3")
        eventually(lambda: len(broker_ips(kube, DAY2)) == 3, within=240, what="a third broker Ready")
        if not killer.fired.wait(60):
            killer.fire()
        deleted = time.monotonic()
        caught = f"during its plan of {killer.seen.get('moveCount')} moves" if killer.seen else "with no plan seen"
        eventually(lambda: any(is_ready(p) and p["metadata"]["name"] not in first
                               for p in kube.items("pods", "-l", OPERATOR_SELECTOR, namespace=OPERATOR_NAMESPACE)),
                   within=180, what="a new operator pod Ready")  # fmt: skip
        back = time.monotonic() - deleted
        led = eventually(lambda: balanced(kube, 3), within=180, what="leaders spread over the 3 brokers")
        eventually(lambda: ready_and_running(kube), what="day2 Running and Ready after the restart")
        eventually(lambda: (c := kube.condition(DAY2, "Rebalancing")) and c["status"] == "False",
                   within=60, what="no plan left running")  # fmt: skip
        records = traffic.check()
    assert traffic.errors == [], traffic.errors[:5]
    assert kube.get("deployment", f"{DAY2}-broker")["spec"]["replicas"] == 3
    last = rebalance_status(kube).get("lastPlan") or {}
    print(f"\noperator deleted {caught}: its replacement pod running after {back:.1f} s, partitions led per broker "
          f"{sorted(led.values())}, last plan {last.get('result')} ({last.get('message')}), {records} records "
          f"checked, {len(traffic.refused)} produce calls refused by the client and retried")  # fmt: skip


# --- 4. a broker pod deleted -------------------------------------------------------------------------


def test_a_deleted_broker_pod_is_replaced_and_its_partitions_fail_over(
    kube: Cluster, day2: None, node_dir: pathlib.Path
) -> None:
    listed = kube.items("pods", "-l", SELECTOR)
    pods = {p["status"]["podIP"]: p["metadata"]["name"] for p in listed}
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": ",".join(f"{ip}:9092" for ip in pods)}).list_topics(TOPIC, timeout=10)
    victim_id = meta.topics[TOPIC].partitions[0].leader  # a broker leading some of the topic
    victim_ip = meta.brokers[victim_id].host
    victim = pods[victim_ip]
    its_partitions = {p for p, part in meta.topics[TOPIC].partitions.items() if part.leader == victim_id}
    assert its_partitions, f"{victim} leads nothing: {meta.topics[TOPIC].partitions}"
    victim_uid = next(p["metadata"]["uid"] for p in listed if p["metadata"]["name"] == victim)
    with Traffic(kube, "day2-failover") as traffic:
        deleted = time.monotonic()
        # No grace period: the process is SIGKILLed, as when its node dies; nothing drains.
        kube.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--force")
        eventually(lambda: victim_uid not in pod_processes(node_dir), within=60, what="the broker's process killed")
        killed = time.monotonic()

        def acks_resumed() -> float | None:
            first: dict[int, float] = {}
            for t, p in list(traffic.acks):
                if t > killed:
                    first.setdefault(p, t)
            return max(first[p] for p in its_partitions) - killed if its_partitions <= set(first) else None

        acks_back = eventually(acks_resumed, within=120, what="acks again on the deleted broker's partitions")
        eventually(lambda: len(broker_ips(kube, DAY2)) == 3 and victim not in
                   {p["metadata"]["name"] for p in kube.items("pods", "-l", SELECTOR)},
                   within=240, what="a replacement broker Ready")  # fmt: skip
        replaced = time.monotonic() - killed
        moved = leaders(kube)
        assert not {p for p in its_partitions if moved.get(p) == victim_id}
        eventually(lambda: balanced(kube, 3), within=120, what="leaders spread over the 3 brokers again")
        records = traffic.check()
    print(f"\nbroker pod force-deleted (kill {killed - deleted:.1f} s after the delete): acks again on its "
          f"{len(its_partitions)} partitions {acks_back:.1f} s after the kill, "
          f"replacement Ready after {replaced:.1f} s, {len(traffic.errors)} produce errors (not acked, "
          f"so not lost), {records} records checked")  # fmt: skip


# --- 5. uninstall ----------------------------------------------------------------------------------------


OWNED = ["deployment", "replicaset", "pod", "service", "configmap", "serviceaccount", "pdb", "secret"]


def owned_by(kube: Cluster, uid: str) -> list[str]:
    listing = json.loads(kube.kubectl("get", ",".join(OWNED), "-n", NAMESPACE, "-o", "json").stdout)["items"]
    return [f"{o['kind']}/{o['metadata']['name']}" for o in listing
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
            or o["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == DAY2]  # fmt: skip


def test_uninstall_leaves_nothing_running(
    kube: Cluster, day2: None, helm: Callable[..., Any], node_dir: pathlib.Path
) -> None:
    uid = kube.get("streamcluster", DAY2)["metadata"]["uid"]
    kinds = {name.split("/")[0] for name in owned_by(kube, uid)}
    assert kinds == {"Deployment", "ReplicaSet", "Pod", "Service", "ConfigMap", "ServiceAccount",
                     "PodDisruptionBudget", "Secret"}, owned_by(kube, uid)  # fmt: skip
    pods = {p["metadata"]["uid"] for p in kube.items("pods", "-l", SELECTOR)}
    kube.kubectl("delete", "streamcluster", DAY2, "-n", NAMESPACE, "--timeout=240s")
    eventually(lambda: owned_by(kube, uid) == [], within=240, what="every object day2 owned gone")
    eventually(lambda: not pods & pod_processes(node_dir), within=120, what="the brokers' processes gone")
    assert kube.kubectl("get", "streamclusters", "-n", NAMESPACE, "-o", "name").stdout.strip() == ""

    helm("uninstall", "floe", "-n", OPERATOR_NAMESPACE, "--wait", "--timeout", "120s")
    eventually(lambda: kube.items("pods", namespace=OPERATOR_NAMESPACE) == [], within=120,
               what="the operator pod gone")  # fmt: skip
    assert kube.kubectl("get", "deployments", "-n", OPERATOR_NAMESPACE, "-o", "name").stdout.strip() == ""
    eventually(lambda: not podprocesses.find(node_dir), within=120, what="no pod process left")
