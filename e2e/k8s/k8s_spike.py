"""The traffic spike of ``make spike`` with Kubernetes deciding: the same load, checker, summary and plot.

``e2e/spike.py`` drives ``floe local up --autoscale``; here the brokers are
pods of a StreamCluster, the real HPA controller sets their count from the
metrics adapter and the operator's rebalance loop moves partition leaders.
What is reused from ``e2e/spike.py`` as it is: the acks=all idempotent
producer and the consumer group (``produce``, ``consume``), the ledger of
every acknowledged (partition, offset, value) and what the consumer read
(``Ledger``), the re-read of anything the consumer missed (``reread``), the
once-a-second sampler (``Sampler``: rates, per-broker bytes in, p99,
leaders), ``summarize`` and ``plot``.

What differs is where the facts come from. ``floe local up`` writes
``brokers.json`` and an event log; on Kubernetes :class:`PodSampler` reads
them from the API server once a second (one ``kubectl get`` of the pods, the
Deployment and the StreamCluster):

* brokers: the StreamCluster's pods; Ready -> ``ready``, a deletion timestamp
  -> ``draining``, their node ids from the brokers' own ``/v1/cluster``;
* ``scale_out`` / ``scale_in``: the Deployment's replicas, which the HPA sets;
* ``broker_ready``, ``drain_started``, ``drain_exited``: pods turning Ready,
  being deleted, and going (the exit code from the kubelet stand-in's log);
* ``plan``: each plan the operator finished (``status.rebalance.lastPlan``);
* ``balanced``: the first round after a new broker's readiness in which the
  operator reports ``Balanced`` for every Ready broker (its own verdict, so
  it includes the loop's interval).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import spike  # noqa: E402  (e2e/spike.py)

ADMIN_PORT = 9644
KAFKA_PORT = 9092
NOT_LOGGED = -1000  # a drain's exit code the kubelet stand-in's log did not give


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class PodSampler(spike.Sampler):
    """``spike.Sampler`` over a StreamCluster's pods, plus the events ``floe local up`` would log."""

    def __init__(self, *, kubectl: Callable[..., subprocess.CompletedProcess[str]], namespace: str, name: str,
                 kubelet_log: pathlib.Path, state: pathlib.Path, ledger: spike.Ledger, rate: Any,
                 phase: Any) -> None:  # fmt: skip
        super().__init__(state, ledger, rate, phase)
        self.kubectl, self.namespace, self.name, self.kubelet_log = kubectl, namespace, name, kubelet_log
        self.events: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] = []  # what brokers.json holds for floe local up
        self._nodes: dict[str, int] = {}  # pod IP -> node id
        self.replicas: int | None = None
        self._ready_seen: set[str] = set()
        self._deleting: set[str] = set()
        self._plans_seen: set[str] = set()
        self._waiting_since: float | None = None  # a new broker's readiness not yet followed by Balanced
        self.rebalance: dict[str, Any] = {}

    def brokers(self) -> list[dict[str, Any]]:
        return self._rows

    def sample(self) -> None:
        try:
            self._observe()
        except (subprocess.SubprocessError, ValueError, KeyError) as exc:
            print(f"k8s spike: could not read the cluster this second ({exc})", file=sys.stderr, flush=True)
        super().sample()

    def _node_ids(self, ips: list[str]) -> None:
        for ip in ips:
            try:
                view = spike.get_json(f"http://{ip}:{ADMIN_PORT}/v1/cluster")
            except OSError:
                continue
            self._nodes.update({b["host"]: b["node_id"] for b in view["brokers"]})
            return

    def _observe(self) -> None:
        now = time.time()
        items = json.loads(self.kubectl("get", "pods,deployments,streamclusters", "-n", self.namespace,
                                        "-o", "json").stdout)["items"]  # fmt: skip
        prefix = f"{self.name}-broker-"
        pods = [i for i in items if i["kind"] == "Pod" and i["metadata"]["name"].startswith(prefix)]
        named = {(i["kind"], i["metadata"]["name"]): i for i in items}
        deployment = named[("Deployment", f"{self.name}-broker")]
        cluster = named[("StreamCluster", self.name)]

        replicas = int(deployment["spec"]["replicas"])
        if self.replicas is not None and replicas != self.replicas:
            kind = "scale_out" if replicas > self.replicas else "scale_in"
            self.events.append({"event": kind, "t": now, "current": self.replicas, "desired": replicas})
        self.replicas = replicas

        rows, names = [], set()
        for pod in pods:
            name, ip = pod["metadata"]["name"], (pod.get("status") or {}).get("podIP")
            names.add(name)
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (pod.get("status") or {}).get("conditions") or [])  # fmt: skip
            if pod["metadata"].get("deletionTimestamp"):
                state = "draining"
                if name not in self._deleting:
                    self._deleting.add(name)
                    self.events.append({"event": "drain_started", "t": now, "index": name})
            else:
                state = "ready" if ready else "starting"
            if ready and name not in self._ready_seen:
                self._ready_seen.add(name)
                self.events.append({"event": "broker_ready", "t": now, "pod": name})
                self._waiting_since = now
            if ip and state != "starting":
                if ip not in self._nodes:
                    self._node_ids([ip])
                if ip in self._nodes:
                    rows.append({"state": state, "http": f"{ip}:{ADMIN_PORT}", "kafka": f"{ip}:{KAFKA_PORT}",
                                 "node": self._nodes[ip], "pod": name})  # fmt: skip
        for gone in sorted(self._deleting - names):
            self._deleting.discard(gone)
            self.events.append({"event": "drain_exited", "t": now, "index": gone, "code": self.exit_code(gone)})
        self._rows = rows

        self.rebalance = (cluster.get("status") or {}).get("rebalance") or {}
        plan = self.rebalance.get("lastPlan") or {}
        if plan.get("result") in ("Succeeded", "Failed") and plan.get("startedAt") not in self._plans_seen:
            self._plans_seen.add(plan["startedAt"])
            errors = sum(1 for m in plan.get("moves") or [] if m.get("error"))
            self.events.append({"event": "plan", "t": parse_time(plan.get("finishedAt")) or now,
                                "seconds": float(plan.get("durationSeconds") or 0.0),
                                "moves": int(plan.get("moveCount") or 0), "errors": errors})  # fmt: skip
        ready_rows = [r for r in rows if r["state"] == "ready"]
        reported = {b.get("nodeId") for b in self.rebalance.get("brokers") or []}
        observed_at = parse_time(self.rebalance.get("observedAt"))
        if (self._waiting_since is not None and self.rebalance.get("state") == "Balanced" and observed_at
                and observed_at >= self._waiting_since and {r["node"] for r in ready_rows} <= reported):
            self.events.append({"event": "balanced", "t": now, "seconds": round(observed_at - self._waiting_since, 2)})
            self._waiting_since = None

    def exit_code(self, pod: str) -> int:
        """The broker container's exit code, as the kubelet stand-in logged it when the pod stopped.

        ``NOT_LOGGED`` when the log has no line for it (the summary then shows it among the codes).
        """
        try:
            text = self.kubelet_log.read_text(errors="replace")
        except OSError:
            return NOT_LOGGED
        found = re.findall(rf"stopped {re.escape(self.namespace)}/{re.escape(pod)}: broker exited (-?\d+)", text)
        return int(found[-1]) if found else NOT_LOGGED


class Spike:
    """The load, phase by phase, with the sampler running; the caller decides when a phase ends.

    ``base`` -> ``spike`` -> ``after`` (base rate again) -> :meth:`finish`
    (producer stopped, consumer given 60 s to catch up, anything it missed
    read back directly), then :meth:`summary`.
    """

    def __init__(self, *, bootstrap: str, sampler_factory: Callable[..., PodSampler], partitions: int,
                 preset: spike.Preset, out: pathlib.Path, state: pathlib.Path) -> None:  # fmt: skip
        self.bootstrap, self.preset, self.out, self.state = bootstrap, preset, out, state
        self.args = argparse.Namespace(partitions=partitions, record_bytes=1000, consumer="group",
                                       csv=str(out / "k8s-spike.csv"), png=str(out / "k8s-spike.png"))  # fmt: skip
        self.ledger = spike.Ledger(partitions)
        self.current = "base"
        self.phase_ends: list[float] = []
        self.sampler = sampler_factory(ledger=self.ledger, rate=self.rate, phase=self.phase)
        self.stop_load, self.stop_consumer = threading.Event(), threading.Event()
        self.threads = [
            threading.Thread(target=spike.produce, args=(self.args, bootstrap, self.ledger, self.rate, self.stop_load),
                             daemon=True),
            threading.Thread(target=spike.consume, args=(self.args, bootstrap, self.ledger, self.stop_consumer),
                             daemon=True),
        ]  # fmt: skip
        self.t0 = time.time()
        self.produced_until = 0.0
        self.caught_up_at: float | None = None

    def rate(self, now: float) -> float:
        return self.preset.spike_mb if self.current == "spike" else self.preset.base_mb

    def phase(self, now: float) -> str:
        return self.current

    def start(self) -> None:
        self.t0 = time.time()
        for t in self.threads:
            t.start()

    def enter(self, phase: str) -> None:
        """Switch the offered rate: ``spike`` raises it, ``after`` drops it back."""
        self.current = phase
        self.phase_ends.append(time.time())

    def run_until(self, done: Callable[[], Any], *, within: float, what: str) -> Any:
        """Sample once a second until ``done()`` is true; an AssertionError naming ``what`` after ``within``."""
        deadline = time.time() + within
        last: Any = None
        while time.time() < deadline:
            self.sampler.sample()
            try:
                last = done()
                if last:
                    return last
            except (subprocess.CalledProcessError, KeyError, ValueError, IndexError) as exc:
                last = exc
            time.sleep(max(0.0, 1.0 - (time.time() - self.sampler.last)))
        raise AssertionError(f"{what} not met within {within}s (last: {last!r})")

    def finish(self) -> None:
        self.stop_load.set()
        self.threads[0].join(150)
        self.produced_until = time.time()
        deadline = self.produced_until + 60
        while time.time() < deadline:
            self.sampler.sample()
            if self.ledger.lag() == 0 and not self.ledger.missing():
                self.caught_up_at = time.time()
                break
            time.sleep(0.5)
        self.stop_consumer.set()
        self.threads[1].join(30)
        missing = self.ledger.missing()
        self.ledger.unconsumed = len(missing)
        if missing:
            live = [r["kafka"] for r in self.sampler.brokers() if r["state"] == "ready"]
            spike.reread(",".join(live) or self.bootstrap, self.ledger, missing)
        self.sampler.sample()

    def stop(self) -> None:
        self.stop_load.set()
        self.stop_consumer.set()
        for t in self.threads:
            if t.is_alive():
                t.join(30)

    def summary(self, **extra: Any) -> dict[str, Any]:
        """``spike.summarize``'s summary (and its CSV and plot), with what only Kubernetes knows."""
        final = self.sampler.final_scrape()
        phase_ends = (self.phase_ends + [self.produced_until, self.produced_until])[:2]
        summary = spike.summarize(self.args, self.preset, self.state, "k8s", self.ledger, self.sampler,
                                  self.sampler.events, final, self.t0, phase_ends, self.produced_until,
                                  self.caught_up_at, None)  # fmt: skip
        summary.pop("local_up_exit", None)
        summary["checker"] = {
            "acked": summary["acked"], "lost": summary["lost"], "delivery_errors": summary["delivery_errors"],
            "consumer_caught_up": summary["consumer_caught_up"],
            "verdict": "pass" if summary["lost"] == 0 and summary["consumer_caught_up"]
            and summary["delivery_errors"] == 0 else "fail",
        }  # fmt: skip
        summary.update(extra)
        return summary
