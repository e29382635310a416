"""The local scaling loop: broker processes, a load source, the balancer and the HPA.

``floe local up --autoscale`` runs this in its main thread. Once per
``interval`` it

1. reads load: total bytes in per second over ``rate_window`` (what the HPA
   reacts to) and per-partition bytes in + out per second over the longer
   ``balance_window`` (what the balancer weighs: a partition that just moved
   pauses for a moment, and a short window would make it look light), from a local Prometheus scraping every
   broker's ``/metrics`` (:class:`PrometheusSource`), or, where no prometheus
   binary is installed, by scraping ``/metrics`` itself and differencing the
   counters (:class:`DirectSource`);
2. asks the HPA arithmetic (:mod:`.hpa`) for a broker count, with the metric
   "bytes in per broker per second" (the cluster's total over the brokers
   that are not draining) against ``target_bytes_per_broker``;
3. scales out by starting broker processes, waiting for ``/readyz`` and
   planning at once (a new broker takes its share within one admin call), or
   scales in by SIGTERM to the least-loaded brokers, whose drain moves their
   partitions away; a background thread waits for each to exit 0;
4. runs the operator's balancer (:mod:`floe_operator.planner`) on the
   cluster's leaders (``GET /v1/cluster``) and the per-partition load, and
   applies its moves with ``POST /v1/reassignments``; never while a broker
   is draining (its drain is the plan in progress).

Everything it does is appended to ``DIR/autoscale.jsonl`` (one JSON object
per event, ``t`` in Unix seconds) and the current brokers are written to
``DIR/brokers.json``, which is how the spike scenario follows it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from floe_broker import local as broker_local
from floe_operator import planner
from floe_operator.local import flags, hpa

PROMETHEUS = "/usr/bin/prometheus"


# ---- small HTTP helpers --------------------------------------------------------------------


def http_json(url: str, body: object | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def http_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ---- broker processes ----------------------------------------------------------------------


@dataclass
class Broker:
    index: int
    kafka: str
    http: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float
    node: int | None = None
    ready_at: float | None = None
    draining_since: float | None = None
    exit_code: int | None = None


@dataclass
class Fleet:
    """The broker processes of one local cluster, on consecutive free ports."""

    state: Path
    storage: str
    cluster: str
    host: str
    kafka_port: int
    http_port: int
    extra: list[str]
    events: EventLog
    brokers: list[Broker] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _ports(self) -> tuple[int, int]:
        while True:
            i = self._next
            self._next += 1
            k, h = self.kafka_port + i, self.http_port + i
            if port_free(self.host, k) and port_free(self.host, h):
                return k, h

    def start(self, count: int) -> list[Broker]:
        """Start ``count`` brokers and wait until each is ready (or has exited)."""
        env = dict(os.environ)
        env.setdefault("FLOE_LOG_FORMAT", "console")
        new: list[Broker] = []
        for _ in range(count):
            k, h = self._ports()
            index = len(self.brokers) + len(new)
            log_path = self.state / f"broker-{index}.log"
            cmd = broker_local.broker_command(storage=self.storage, cluster=self.cluster, host=self.host,
                                              kafka_port=k, http_port=h, extra=self.extra)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            b = Broker(index, f"{self.host}:{k}", f"{self.host}:{h}", proc, log_path, time.time())
            new.append(b)
            self.events.write("broker_started", index=index, kafka=b.kafka, http=b.http, pid=proc.pid)
        with self._lock:
            self.brokers.extend(new)
        for b in new:
            if broker_local.wait_ready(b.http, proc=b.proc):
                b.ready_at = time.time()
                b.node = int(http_json(f"http://{b.http}/readyz", timeout=5)["node"])
                self.events.write("broker_ready", index=b.index, node=b.node, http=b.http,
                                  seconds=round(b.ready_at - b.started, 3))
            else:
                self.events.write("broker_failed", index=b.index, http=b.http, code=b.proc.poll())
                print(f"broker {b.index} at {b.http} did not become ready; see {b.log_path}", file=sys.stderr)
        self.save()
        return [b for b in new if b.ready_at is not None]

    def serving(self) -> list[Broker]:
        """Ready brokers that are not draining and still run: what the HPA counts."""
        with self._lock:
            return [b for b in self.brokers
                    if b.ready_at is not None and b.draining_since is None and b.proc.poll() is None]

    def running(self) -> list[Broker]:
        with self._lock:
            return [b for b in self.brokers if b.proc.poll() is None]

    def drain(self, b: Broker, *, timeout: float) -> threading.Thread:
        """SIGTERM (the broker drains itself and exits 0); a thread waits and records the exit."""
        b.draining_since = time.time()
        self.events.write("drain_started", index=b.index, node=b.node, http=b.http)
        b.proc.send_signal(signal.SIGTERM)
        self.save()

        def wait() -> None:
            try:
                code = b.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                code = b.proc.wait()
                print(f"broker {b.index} did not finish draining in {timeout}s; killed", file=sys.stderr)
            b.exit_code = code
            assert b.draining_since is not None
            self.events.write("drain_exited", index=b.index, node=b.node, code=code,
                              seconds=round(time.time() - b.draining_since, 3))
            if code != 0:
                print(f"broker {b.index} exited {code} after drain; see {b.log_path}", file=sys.stderr)
            self.save()

        t = threading.Thread(target=wait, name=f"drain-{b.index}", daemon=True)
        t.start()
        return t

    def save(self) -> None:
        with self._lock:
            rows = [{"index": b.index, "node": b.node, "kafka": b.kafka, "http": b.http, "pid": b.proc.pid,
                     "state": ("exited" if b.exit_code is not None or b.proc.poll() is not None
                               else "draining" if b.draining_since is not None
                               else "ready" if b.ready_at is not None else "starting")}
                    for b in self.brokers]
        tmp = self.state / "brokers.json.tmp"
        tmp.write_text(json.dumps(rows))
        tmp.replace(self.state / "brokers.json")

    def stop_all(self, timeout: float) -> None:
        for b in self.running():
            if b.draining_since is None:
                b.draining_since = time.time()
                b.proc.send_signal(signal.SIGTERM)
        for b in list(self.brokers):
            try:
                b.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait()
        self.save()


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        row = {"t": round(time.time(), 3), "event": event, **fields}
        with self._lock, open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


# ---- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    bytes_in: float  # whole cluster, bytes/s
    partitions: dict[tuple[str, int], float]  # (topic, partition) -> bytes/s in + out (see partition_load)


PartitionRates = dict[tuple[str, int], float]


def partition_load(ins: PartitionRates, outs: PartitionRates) -> PartitionRates:
    """Each partition's bytes in + out, with its *out* taken as its bytes in times its topic's out/in.

    After a leader moves, the partition's consumers pause until they find the new leader, so its
    own bytes out dip for a while and a freshly moved partition looked up to half as heavy as its
    peers, which made the balancer pile more onto the broker that had just received it. Bytes in
    follow a move within a round trip (producers get the new leader in the NOT_LEADER answer), and
    the topic's out/in ratio is steady across the moves of a few of its partitions.
    """
    topic_in: dict[str, float] = {}
    topic_out: dict[str, float] = {}
    for (t, _), v in ins.items():
        topic_in[t] = topic_in.get(t, 0.0) + v
    for (t, _), v in outs.items():
        topic_out[t] = topic_out.get(t, 0.0) + v
    out: PartitionRates = {}
    for key in {*ins, *outs}:
        t = key[0]
        if topic_in.get(t, 0.0) > 0:
            out[key] = ins.get(key, 0.0) * (1.0 + topic_out.get(t, 0.0) / topic_in[t])
        else:  # a topic nobody writes to: what is read is the load
            out[key] = outs.get(key, 0.0)
    return out


class LoadSource(Protocol):
    def targets(self, https: list[str]) -> None: ...
    def tick(self) -> None: ...
    def load(self) -> Load | None: ...
    def close(self) -> None: ...


class DirectSource:
    """Scrape every broker's ``/metrics`` and take rates from counter deltas over the window."""

    def __init__(self, window: float, balance_window: float | None = None) -> None:
        self.window = window
        self.balance_window = balance_window or window
        self._targets: list[str] = []
        # (http, series key) -> deque of (t, value)
        self._hist: dict[tuple[str, tuple[str, str, str]], deque[tuple[float, float]]] = {}

    def targets(self, https: list[str]) -> None:
        self._targets = list(https)

    def tick(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        now = time.monotonic()
        for http in self._targets:
            try:
                text = http_text(f"http://{http}/metrics", timeout=2)
            except OSError:
                continue
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.name == "floe_bytes_in_total":
                        key = ("in", "", "")
                    elif s.name in ("floe_partition_bytes_in_total", "floe_partition_bytes_out_total"):
                        key = (s.name, s.labels["topic"], s.labels["partition"])
                    else:
                        continue
                    q = self._hist.setdefault((http, key), deque())
                    q.append((now, s.value))
        cutoff = now - max(self.window, self.balance_window)
        for q in self._hist.values():
            while len(q) > 2 and q[1][0] <= cutoff:
                q.popleft()

    @staticmethod
    def _rate(q: deque[tuple[float, float]], now: float, window: float) -> float:
        """Per-second increase over the samples in the last ``window`` seconds; 0 once stale."""
        pts = [(t, v) for t, v in q if t >= now - window]
        if len(pts) < 2 or now - pts[-1][0] > window:
            return 0.0
        increase = 0.0
        for (_, a), (_, b) in zip(pts, pts[1:], strict=False):
            increase += b - a if b >= a else b  # a counter reset restarts from 0
        dt = pts[-1][0] - pts[0][0]
        return increase / dt if dt > 0 else 0.0

    def load(self) -> Load | None:
        now = time.monotonic()
        if not any(len(q) >= 2 for q in self._hist.values()):
            return None
        total = 0.0
        ins: PartitionRates = {}
        outs: PartitionRates = {}
        for (_http, key), q in self._hist.items():
            if key[0] == "in":
                total += self._rate(q, now, self.window)
            else:
                pk = (key[1], int(key[2]))
                rates = ins if key[0] == "floe_partition_bytes_in_total" else outs
                rates[pk] = rates.get(pk, 0.0) + self._rate(q, now, self.balance_window)
        return Load(total, partition_load(ins, outs))

    def close(self) -> None:
        pass


class PrometheusSource:
    """A local Prometheus (file_sd targets rewritten as brokers come and go) answering rate() queries."""

    def __init__(self, binary: str, state: Path, *, window: float, scrape_interval: float, port: int,
                 host: str = "127.0.0.1", balance_window: float | None = None) -> None:
        self.dir = state / "prometheus"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "tsdb").mkdir(parents=True)
        self.window = window
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.url = f"http://{host}:{port}"
        scrape = _duration(scrape_interval)
        self.targets_file = self.dir / "targets.json"
        self._last_targets: list[str] | None = None
        self.targets([])
        (self.dir / "prometheus.yml").write_text(
            "global:\n"
            f"  scrape_interval: {scrape}\n"
            f"  scrape_timeout: {scrape}\n"
            f"  evaluation_interval: {scrape}\n"
            "scrape_configs:\n"
            "  - job_name: floe\n"
            "    file_sd_configs:\n"
            f"      - files: ['{self.targets_file}']\n"
            "        refresh_interval: 1s\n"
        )
        self.log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
             f"--web.listen-address={host}:{port}", "--storage.tsdb.retention.time=2h"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}; see {self.dir / 'prometheus.log'}")
            try:
                http_text(f"{self.url}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.close()
            raise RuntimeError("prometheus did not become ready in 30 s")
        # rate() needs two samples inside the window.
        self._w = _duration(max(window, 2 * scrape_interval))
        self._bw = _duration(max(balance_window or window, 2 * scrape_interval))

    def targets(self, https: list[str]) -> None:
        if self._last_targets == sorted(https):
            return
        self._last_targets = sorted(https)
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": sorted(https), "labels": {"job": "floe"}}]))
        tmp.replace(self.targets_file)

    def tick(self) -> None:
        pass

    def _query(self, q: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        body = http_json(url, timeout=5)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query failed: {body}")
        return list(body["data"]["result"])

    def load(self) -> Load | None:
        try:
            total_rows = self._query(f"sum(rate(floe_bytes_in_total[{self._w}]))")
            if not total_rows:
                return None
            rates: list[PartitionRates] = []
            for name in ("floe_partition_bytes_in_total", "floe_partition_bytes_out_total"):
                rows = self._query(f"sum by (topic, partition) (rate({name}[{self._bw}]))")
                rates.append({(r["metric"]["topic"], int(r["metric"]["partition"])): float(r["value"][1])
                              for r in rows})
            return Load(float(total_rows[0]["value"][1]), partition_load(rates[0], rates[1]))
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            print(f"autoscaler: prometheus query failed: {exc}", file=sys.stderr)
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir / "tsdb", ignore_errors=True)


def _duration(seconds: float) -> str:
    """A Prometheus duration (integer units only: 0.5 s is ``500ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


def make_source(ns: argparse.Namespace, state: Path) -> LoadSource:
    choice = ns.prometheus
    binary = None if choice == "off" else (PROMETHEUS if choice == "auto" else choice)
    if binary is not None and not (os.path.exists(binary) or shutil.which(binary)):
        print(f"autoscaler: prometheus not found at {binary}; reading the brokers' /metrics directly",
              file=sys.stderr, flush=True)
        binary = None
    if binary is None:
        return DirectSource(ns.rate_window, ns.balance_window)
    try:
        return PrometheusSource(shutil.which(binary) or binary, state, window=ns.rate_window,
                                balance_window=ns.balance_window, scrape_interval=ns.scrape_interval,
                                port=ns.prometheus_port, host=ns.host)
    except (OSError, RuntimeError) as exc:
        print(f"autoscaler: prometheus did not start ({exc}); reading the brokers' /metrics directly",
              file=sys.stderr, flush=True)
        return DirectSource(ns.rate_window, ns.balance_window)


# ---- the loop ----------------------------------------------------------------------------


@dataclass
class Loop:
    fleet: Fleet
    source: LoadSource
    scaler: hpa.Autoscaler
    policy: planner.RebalancePolicy
    events: EventLog
    interval: float
    drain_timeout: float
    max_skew_percent: float
    stop: threading.Event = field(default_factory=threading.Event)
    # Set after a scale-out until the cluster is balanced; the time the last new broker became ready.
    awaiting_balance: float | None = None

    def run(self) -> None:
        self.source.targets([b.http for b in self.fleet.running()])
        next_decision = time.monotonic() + self.interval
        while not self.stop.is_set():
            self.source.targets([b.http for b in self.fleet.running()])
            self.source.tick()
            if time.monotonic() >= next_decision:
                next_decision = time.monotonic() + self.interval
                try:
                    self.step()
                except Exception as exc:  # noqa: BLE001 - one bad round must not end the loop
                    self.events.write("error", error=repr(exc))
                    print(f"autoscaler: {exc!r}", file=sys.stderr, flush=True)
            self.stop.wait(min(1.0, self.interval))

    def step(self) -> None:
        load = self.source.load()
        serving = self.fleet.serving()
        current = len(serving)
        if current == 0:
            return
        metric = load.bytes_in / current if load is not None else None
        now = time.monotonic()
        desired = self.scaler.desired(now=now, current=current, metric=metric)
        self.events.write("decision", current=current, desired=desired,
                          bytes_in=round(load.bytes_in) if load else None,
                          per_broker=round(metric) if metric is not None else None,
                          target=self.scaler.target)
        if desired > current:
            self.scale_out(current, desired, now)
        elif desired < current:
            self.scale_in(current, desired, now, load)
        self.rebalance(load)

    def scale_out(self, current: int, desired: int, now: float) -> None:
        print(f"autoscaler: scale out {current} -> {desired}", flush=True)
        self.events.write("scale_out", current=current, desired=desired)
        self.scaler.scaled(now=now, old=current, new=desired)
        started = self.fleet.start(desired - current)
        self.source.targets([b.http for b in self.fleet.running()])
        if started:
            self.awaiting_balance = max(b.ready_at or 0.0 for b in started)
            # Plan at once: the load is per partition, so it does not wait for the new brokers' scrapes.
            self.rebalance(self.source.load())

    def scale_in(self, current: int, desired: int, now: float, load: Load | None) -> None:
        view = self._cluster()
        led: dict[int, float] = {}
        for p in view["partitions"] if view else []:
            led[p["leader"]] = led.get(p["leader"], 0.0) + (
                load.partitions.get((p["topic"], p["partition"]), 0.0) if load else 0.0)
        serving = self.fleet.serving()
        # The least-loaded brokers go first (what pod-deletion-cost does on Kubernetes).
        victims = sorted(serving, key=lambda b: (led.get(b.node or -1, 0.0), -(b.index)))[: current - desired]
        print(f"autoscaler: scale in {current} -> {desired}: draining "
              + ", ".join(f"node {b.node}" for b in victims), flush=True)
        self.events.write("scale_in", current=current, desired=desired, nodes=[b.node for b in victims])
        self.scaler.scaled(now=now, old=current, new=desired)
        for b in victims:
            self.fleet.drain(b, timeout=self.drain_timeout)

    def _cluster(self) -> dict[str, Any] | None:
        for b in self.fleet.serving():
            try:
                view: dict[str, Any] = http_json(f"http://{b.http}/v1/cluster", timeout=5)
                return view
            except OSError:
                continue
        return None

    def rebalance(self, load: Load | None) -> None:
        view = self._cluster()
        if view is None:
            return
        loads = load.partitions if load else {}
        # A broker we just sent SIGTERM may not show as draining in the view yet: never a target.
        leaving = {b.node for b in self.fleet.brokers if b.draining_since is not None}
        brokers = [planner.BrokerInfo(node_id=b["node_id"], draining=b["draining"] or b["node_id"] in leaving,
                                      new=(not b["draining"] and b["node_id"] not in leaving and b["partitions"] == 0))
                   for b in view["brokers"]]
        parts = [planner.PartitionInfo(p["topic"], p["partition"], p["leader"],
                                       loads.get((p["topic"], p["partition"]), 0.0))
                 for p in view["partitions"]]
        skew = planner.skew_percent(brokers, parts)
        # A drain is a plan in progress: the broker moves its own partitions away. Moving them
        # concurrently raced the drain of the controller itself and left partitions closed.
        draining_now = any(b.draining_since is not None and b.exit_code is None for b in self.fleet.brokers)
        moves = self.policy.decide(brokers, parts, plan_running=draining_now)
        leaders = {p.leader for p in parts}
        if moves:
            target = next(iter(self.fleet.serving()), None)
            if target is None:
                return
            t0 = time.perf_counter()
            body = {"moves": [{"topic": m.topic, "partition": m.partition, "to": m.target} for m in moves]}
            reply = http_json(f"http://{target.http}/v1/reassignments", body, timeout=60)
            seconds = time.perf_counter() - t0
            errors = [r for r in reply.get("results", []) if r.get("error")]
            moved = {(m.topic, m.partition): m.target for m in moves}
            after = [planner.PartitionInfo(p.topic, p.partition, moved.get((p.topic, p.partition), p.leader), p.load)
                     for p in parts]
            skew_after = planner.skew_percent(brokers, after)
            self.events.write("plan", moves=len(moves), errors=len(errors), skew_before=round(skew, 1),
                              skew_after=round(skew_after, 1), seconds=round(seconds, 4),
                              load_moved=round(sum(m.load for m in moves)),
                              detail=[[m.topic, m.partition, m.source, m.target] for m in moves],
                              loads={f"{p.topic}:{p.partition}": round(p.load) for p in parts if p.load >= 1})
            print(f"autoscaler: moved {len(moves) - len(errors)} partitions "
                  f"(skew {skew:.0f}% -> {skew_after:.0f}%) in {seconds:.3f}s", flush=True)
            if not errors:
                skew, leaders = skew_after, {p.leader for p in after}
        if self.awaiting_balance is not None and load is not None:
            active = [b.node_id for b in brokers if not b.draining]
            # Balanced: load within the band and every broker leads something (a new one included).
            if skew <= self.max_skew_percent and all(n in leaders for n in active):
                self.events.write("balanced", seconds=round(time.time() - self.awaiting_balance, 3),
                                  skew=round(skew, 1), brokers=len(active))
                print(f"autoscaler: balanced {time.time() - self.awaiting_balance:.2f}s after the new brokers "
                      f"were ready (skew {skew:.0f}%)", flush=True)
                self.awaiting_balance = None


def run(ns: argparse.Namespace) -> int:
    """``floe local up --autoscale``."""
    state = Path(ns.dir).resolve()
    (state / "data").mkdir(parents=True, exist_ok=True)
    storage = ns.storage or f"file://{state / 'data'}"
    min_brokers = ns.min_brokers or ns.brokers
    if not 1 <= min_brokers <= ns.max_brokers:
        print("need 1 <= --min-brokers <= --max-brokers", file=sys.stderr)
        return 2
    events = EventLog(state / "autoscale.jsonl")
    fleet = Fleet(state=state, storage=storage, cluster=ns.cluster, host=ns.host, kafka_port=ns.kafka_port,
                  http_port=ns.http_port, extra=list(ns.broker_args), events=events)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    source: LoadSource | None = None
    try:
        source = make_source(ns, state)
        if isinstance(source, PrometheusSource):
            print(f"prometheus: {source.url} (scraping every broker's /metrics every {ns.scrape_interval:g}s)",
                  flush=True)
        initial = max(ns.brokers, min_brokers)
        if len(fleet.start(initial)) < initial:
            return 1
        bootstrap = ",".join(b.kafka for b in fleet.serving())
        events.write("up", bootstrap=bootstrap, storage=storage)
        print(f"\nFloe is running on {storage}\n  bootstrap servers: {bootstrap}\n"
              f"  autoscaling {min_brokers}..{ns.max_brokers} brokers on bytes in per broker "
              f"(target {ns.target_bytes_in / 1e6:g} MB/s); events in {state / 'autoscale.jsonl'}\n"
              "Ctrl-C drains and stops the brokers.", flush=True)
        scaler = hpa.Autoscaler(min_replicas=min_brokers, max_replicas=ns.max_brokers, target=ns.target_bytes_in,
                                behavior=flags.behavior_from(ns), tolerance=ns.tolerance)
        policy = planner.RebalancePolicy(max_skew_percent=ns.max_skew_percent, skew_intervals=ns.skew_intervals)
        loop = Loop(fleet=fleet, source=source, scaler=scaler, policy=policy, events=events,
                    interval=ns.autoscale_interval, drain_timeout=ns.drain_timeout,
                    max_skew_percent=ns.max_skew_percent, stop=stop)
        loop.run()
        return 0
    finally:
        fleet.stop_all(ns.drain_timeout)
        if source is not None:
            source.close()
        events.write("stopped")
        print("stopped", flush=True)

