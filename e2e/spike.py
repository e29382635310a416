"""The elastic-scaling scenario: scale out under a traffic spike, scale back in, lose nothing.

    make spike                                   # the full run (about 4 minutes)
    .venv/bin/python e2e/spike.py --quick        # the compressed run CI does (under 2 minutes)

It runs ``floe local up --autoscale`` (brokers as processes over a file://
store, a local Prometheus, the operator's balancer and the HPA arithmetic)
starting from 2 brokers, creates a topic with 24 partitions, and runs an
acks=all idempotent producer (confluent-kafka) and a consumer group at a base
rate; then raises the rate about 5x for a while and drops it again. The
autoscaler should start brokers (the balancer moves partitions onto them as
soon as they are ready) and, after the scale-down stabilization window, drain
brokers one by one (SIGTERM, exit 0) back to 2.

Checked at the end: every acknowledged (partition, offset, value) was read
back by the consumer, and the consumer caught up. Record bytes copied by the
moves are measured as the bytes of ``data/`` objects written during the run
(background compaction is switched off for the run, so any such write would
be a move copying records; a move is metadata-only and writes none), cross-
checked against the brokers' ``floe_objectstore_written_bytes_total{kind="data"}``.

Writes a timeline CSV and a PNG (total throughput, broker count, per-broker
load, produce p99 over time) and prints a summary whose last line is one JSON
object. Nothing is asserted here; ``tests/e2e/test_spike.py`` asserts on the
JSON of the ``--quick`` run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "spike"
HEADER = struct.Struct(">QI")  # sequence number, partition


@dataclass
class Preset:
    base_mb: float
    spike_mb: float
    base_s: float
    spike_s: float
    after_s: float  # most seconds after the drop to wait for scale-in back to the minimum
    target_mb: float  # autoscaler target: bytes in per broker per second
    interval: float
    rate_window: float
    balance_window: float
    scale_down_window: float
    scale_down_policy: str


FULL = Preset(base_mb=1.0, spike_mb=5.0, base_s=20, spike_s=60, after_s=150, target_mb=1.0, interval=2.0,
              rate_window=8.0, balance_window=30.0, scale_down_window=30.0, scale_down_policy="Pods:1:10")
QUICK = Preset(base_mb=0.5, spike_mb=2.5, base_s=8, spike_s=30, after_s=45, target_mb=0.5, interval=1.0,
               rate_window=4.0, balance_window=10.0, scale_down_window=6.0, scale_down_policy="Pods:1:4")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(len(s) * q + 0.5) - 1))]


def free_base_port(span: int = 12) -> int:
    """A base port with ``span`` free ports after it (brokers take consecutive ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + span >= 65535:
            continue
        ok = True
        for p in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


# floe local up secures the admin API; its token is in the state directory (set once it exists).
ADMIN_TOKEN_FILE: Path | None = None


def get_json(url: str, timeout: float = 3.0) -> Any:
    headers = {}
    if ADMIN_TOKEN_FILE is not None and ADMIN_TOKEN_FILE.exists():
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN_FILE.read_text().strip()}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
        return json.load(resp)


def scrape(http: str) -> dict[str, float]:
    """The counters the timeline needs from one broker's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{http}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("floe_bytes_in_total", "floe_bytes_out_total", "floe_wal_bytes_total"):
                out[s.name] = s.value
            elif s.name == "floe_objectstore_written_bytes_total":
                out[f"written_{s.labels['kind']}"] = s.value
    return out


# ---- load -------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the producer was told and what the consumer read, per partition."""

    partitions: int
    acked: list[dict[int, int]] = field(default_factory=list)  # offset -> seq
    seen: list[dict[int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds) in wall time
    acked_at: list[tuple[float, int]] = field(default_factory=list)  # (acked at, bytes)
    consumed_at: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    consumer_errors: list[str] = field(default_factory=list)
    reread: dict[tuple[int, int], int] = field(default_factory=dict)  # the verification read, if one ran
    unconsumed: int = 0  # acked records the consumer (group) had not read when it was stopped
    sent: int = 0
    refused: int = 0  # produce() calls the client refused locally (topic or partition unknown to it)

    def __post_init__(self) -> None:
        self.acked = [{} for _ in range(self.partitions)]
        self.seen = [{} for _ in range(self.partitions)]

    def lag(self) -> int:
        """Acknowledged records the consumer has not read yet (by count, per partition)."""
        with self.lock:
            return sum(max(0, len(a) - len(s)) for a, s in zip(self.acked, self.seen, strict=True))

    def missing(self, *, reread: bool = False) -> list[tuple[int, int, int]]:
        """Acknowledged records the consumer did not read (``reread``: nor the verification read)."""
        with self.lock:
            return [(p, o, seq) for p, a in enumerate(self.acked) for o, seq in a.items()
                    if self.seen[p].get(o) != seq and not (reread and self.reread.get((p, o)) == seq)]


def produce(args: argparse.Namespace, bootstrap: str, ledger: Ledger, rate: Any, stop: threading.Event) -> None:
    from confluent_kafka import KafkaError, KafkaException, Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 120000, "topic.metadata.refresh.interval.ms": 2000})
    pad = os.urandom(args.record_bytes - HEADER.size)
    seq = 0
    t_last = time.time()
    credit = 0.0
    while not stop.is_set():
        now = time.time()
        credit = min(credit + (now - t_last) * rate(now) * 1e6 / args.record_bytes, 2000.0)
        t_last = now
        if credit < 1.0:
            p.poll(0.002)
            continue
        while credit >= 1.0:
            part = seq % args.partitions
            sent = time.time()

            def cb(err: Any, msg: Any, sent: float = sent, s: int = seq, part: int = part) -> None:
                done = time.time()
                if err is not None:
                    ledger.errors.append(f"partition {part}: {err}")
                    return
                with ledger.lock:
                    ledger.acked[part][msg.offset()] = s
                ledger.latencies.append((sent, done - sent))
                ledger.acked_at.append((done, args.record_bytes))

            try:
                p.produce(TOPIC, value=HEADER.pack(seq, part) + pad, partition=part, on_delivery=cb)
            except BufferError:
                p.poll(0.01)
                break
            except KafkaException as exc:
                # The client refused before sending: its metadata momentarily lists the topic without
                # its partitions. Nothing was accepted, so nothing can be lost; count it and let the
                # next metadata refresh bring the partitions back instead of ending the load.
                if exc.args[0].code() not in (KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION):
                    raise
                ledger.refused += 1
                p.poll(0.1)
                break
            seq += 1
            credit -= 1.0
        ledger.sent = seq
        p.poll(0)
    remaining = p.flush(120)
    if remaining:
        ledger.errors.append(f"{remaining} records not delivered at the end")


def consume(args: argparse.Namespace, bootstrap: str, ledger: Ledger, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, TopicPartition

    conf = {"bootstrap.servers": bootstrap, "group.id": "spike-consumers", "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 1000, "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 2000, "session.timeout.ms": 10000}
    c = Consumer(conf)
    if args.consumer == "group":
        c.subscribe([TOPIC])
    else:
        c.assign([TopicPartition(TOPIC, p, 0) for p in range(args.partitions)])
    try:
        while not stop.is_set():
            msgs = c.consume(num_messages=2000, timeout=0.2)
            now = time.time()
            got = 0
            with ledger.lock:
                for m in msgs:
                    if m.error():
                        ledger.consumer_errors.append(str(m.error()))
                        continue
                    p, o, v = m.partition(), m.offset(), m.value()
                    if p is None or o is None or v is None:
                        continue
                    ledger.seen[p][o] = HEADER.unpack_from(v)[0]
                    got += len(v)
            if got:
                ledger.consumed_at.append((now, got))
    finally:
        c.close()


# ---- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    preset = QUICK if args.quick else FULL
    for k in ("base_mb", "spike_mb", "base_s", "spike_s", "after_s", "target_mb"):
        if getattr(args, k) is not None:
            setattr(preset, k, getattr(args, k))
    state = Path(args.dir or tempfile.mkdtemp(prefix="floe-spike-")).resolve()
    state.mkdir(parents=True, exist_ok=True)
    base_port = free_base_port()
    http_base = free_base_port()
    cluster = "spike"
    no_compaction = ["--compact-after-bytes", str(1 << 40), "--compact-after-ms", str(10**9)]
    cmd = [sys.executable, "-m", "floe_cli", "local", "up", "--autoscale", "--dir", str(state),
           "--cluster", cluster, "--brokers", "2", "--min-brokers", "2", "--max-brokers", str(args.max_brokers),
           "--kafka-port", str(base_port), "--http-port", str(http_base),
           "--target-bytes-in", str(preset.target_mb * 1e6), "--autoscale-interval", str(preset.interval),
           "--rate-window", str(preset.rate_window), "--balance-window", str(preset.balance_window),
           "--scale-down-window", str(preset.scale_down_window),
           "--scale-down-policy", preset.scale_down_policy, "--prometheus", args.prometheus,
           "--", "--fsync", "false", "--session-timeout-ms", "5000", *no_compaction]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "broker"), str(ROOT / "operator")])}
    out = open(state / "local-up.log", "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    print(f"spike: floe local up --autoscale (pid {up.pid}) in {state}", file=sys.stderr, flush=True)
    global ADMIN_TOKEN_FILE
    ADMIN_TOKEN_FILE = state / "secrets" / "admin-token"
    events_path = state / "autoscale.jsonl"
    stop_load = threading.Event()
    stop_consumer = threading.Event()
    threads: list[threading.Thread] = []
    try:
        bootstrap = wait_brokers(state, up, 2)
        create_topic(bootstrap, args.partitions)
        ledger = Ledger(args.partitions)
        t0 = time.time()
        phase_ends = [t0 + preset.base_s, t0 + preset.base_s + preset.spike_s]

        def rate(now: float) -> float:
            return preset.spike_mb if phase_ends[0] <= now < phase_ends[1] else preset.base_mb

        def phase(now: float) -> str:
            return "base" if now < phase_ends[0] else "spike" if now < phase_ends[1] else "after"

        threads = [threading.Thread(target=produce, args=(args, bootstrap, ledger, rate, stop_load), daemon=True),
                   threading.Thread(target=consume, args=(args, bootstrap, ledger, stop_consumer), daemon=True)]
        for t in threads:
            t.start()
        sampler = Sampler(state, ledger, rate, phase)
        # The phases are durations of the offered load, not synchronisation.
        while time.time() < phase_ends[1]:
            sampler.sample()
            time.sleep(max(0.0, 1.0 - (time.time() - sampler.last)))
        # After the drop: run at the base rate until the autoscaler is back at the minimum (or after_s).
        deadline = time.time() + preset.after_s
        settled_at: float | None = None
        while time.time() < deadline:
            sampler.sample()
            ready, draining = sampler.counts()
            if ready <= 2 and draining == 0:
                settled_at = settled_at or time.time()
                if time.time() - settled_at >= 3:
                    break
            else:
                settled_at = None
            time.sleep(max(0.0, 1.0 - (time.time() - sampler.last)))
        stop_load.set()
        threads[0].join(150)
        produced_until = time.time()
        # The consumer keeps reading until it has every acknowledged record (or 60 s).
        caught_up_at = None
        while time.time() < produced_until + 60:
            sampler.sample()
            if ledger.lag() == 0 and not ledger.missing():
                caught_up_at = time.time()
                break
            time.sleep(0.5)
        stop_consumer.set()
        threads[1].join(30)
        missing = ledger.missing()
        ledger.unconsumed = len(missing)
        if missing:
            # Not read by the consumer: are the records there at all? (a consumer failure is not data loss)
            print(f"spike: the consumer missed {len(missing)} acked records; reading them back directly",
                  file=sys.stderr, flush=True)
            reread(wait_brokers(state, up, 1), ledger, missing)
        sampler.sample()
        final = sampler.final_scrape()
        sampler.save_cluster(state / "cluster-at-end.json")
    finally:
        stop_load.set()
        stop_consumer.set()
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        try:
            up.wait(180)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        out.close()
    events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
    summary = summarize(args, preset, state, cluster, ledger, sampler, events, final, t0, phase_ends,
                        produced_until, caught_up_at, up.returncode)
    if not args.keep_data:
        shutil.rmtree(state / "data", ignore_errors=True)  # hundreds of MB; logs and events stay
    summary["state_dir"] = str(state)
    return summary


def reread(bootstrap: str, ledger: Ledger, missing: list[tuple[int, int, int]], timeout: float = 60) -> None:
    """Fetch the given acknowledged records with a fresh assign()-based consumer into ``ledger.reread``."""
    from confluent_kafka import Consumer, TopicPartition

    want: dict[int, set[int]] = {}
    for p, o, _ in missing:
        want.setdefault(p, set()).add(o)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "spike-verify", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(TOPIC, p, min(offs)) for p, offs in want.items()])
    deadline = time.time() + timeout
    try:
        while want and time.time() < deadline:
            for m in c.consume(num_messages=2000, timeout=0.5):
                mp, mo, mv = m.partition(), m.offset(), m.value()
                if m.error() or mp is None or mo is None or mv is None or mp not in want:
                    continue
                offs = want[mp]
                if mo in offs:
                    offs.discard(mo)
                    ledger.reread[(mp, mo)] = HEADER.unpack_from(mv)[0]
                if not offs or mo >= max(offs, default=-1):
                    want.pop(mp, None)
    finally:
        c.close()


def wait_brokers(state: Path, up: subprocess.Popen[bytes], n: int, timeout: float = 90) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if up.poll() is not None:
            raise RuntimeError(f"floe local up exited {up.returncode}:\n{(state / 'local-up.log').read_text()}")
        try:
            rows = json.loads((state / "brokers.json").read_text())
        except (OSError, ValueError):
            rows = []
        ready = [r for r in rows if r["state"] == "ready"]
        if len(ready) >= n:
            return ",".join(r["kafka"] for r in ready)
        time.sleep(0.2)
    raise TimeoutError("brokers did not become ready")


def create_topic(bootstrap: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, partitions, 1)])[TOPIC].result(30)


class Sampler:
    """Once a second: offered/acked/consumed rates, brokers, per-broker bytes in, p99, leaders."""

    def __init__(self, state: Path, ledger: Ledger, rate: Any, phase: Any) -> None:
        self.state, self.ledger, self.rate, self.phase = state, ledger, rate, phase
        self.rows: list[dict[str, Any]] = []
        self.last = time.time()
        self.prev: dict[str, tuple[float, dict[str, float]]] = {}  # http -> (t, counters)
        self.last_counters: dict[str, dict[str, float]] = {}  # http -> latest counters (kept after exit)
        self.node_of: dict[str, int] = {}
        self.leaders: dict[tuple[str, int], int] = {}
        self.leader_changes = [0, 0]  # [other topics, the spike topic], seen once a second
        self._ack_i = self._con_i = self._lat_i = 0
        self._ready = self._draining = 0

    def counts(self) -> tuple[int, int]:
        return self._ready, self._draining

    def brokers(self) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = json.loads((self.state / "brokers.json").read_text())
            return rows
        except (OSError, ValueError):
            return []

    def sample(self) -> None:
        now = time.time()
        dt = max(now - self.last, 1e-3)
        rows = self.brokers()
        live = [r for r in rows if r["state"] in ("ready", "draining")]
        self._ready = sum(1 for r in rows if r["state"] == "ready")
        self._draining = sum(1 for r in rows if r["state"] == "draining")
        per_broker: dict[int, float] = {}
        for r in live:
            self.node_of[r["http"]] = r["node"]
            try:
                c = scrape(r["http"])
            except OSError:
                continue
            self.last_counters[r["http"]] = c
            if r["http"] in self.prev:
                t_prev, c_prev = self.prev[r["http"]]
                per_broker[r["node"]] = max(0.0, c.get("floe_bytes_in_total", 0) - c_prev.get(
                    "floe_bytes_in_total", 0)) / max(now - t_prev, 1e-3) / 1e6
            self.prev[r["http"]] = (now, c)
        for r in live:
            if r["state"] != "ready":
                continue
            try:
                view = get_json(f"http://{r['http']}/v1/cluster")
            except OSError:
                continue
            for p in view["partitions"]:  # the topic's and __consumer_offsets'
                key = (p["topic"], p["partition"])
                if key in self.leaders and self.leaders[key] != p["leader"]:
                    self.leader_changes[p["topic"] == TOPIC] += 1
                self.leaders[key] = p["leader"]
            break
        acked = self.ledger.acked_at[self._ack_i:]
        self._ack_i += len(acked)
        consumed = self.ledger.consumed_at[self._con_i:]
        self._con_i += len(consumed)
        lats = [lat for _, lat in self.ledger.latencies[self._lat_i:]]
        self._lat_i += len(lats)
        p99 = pct(lats, 0.99)
        p50 = pct(lats, 0.5)
        self.rows.append({
            "t": round(now, 3), "phase": self.phase(now), "offered_MBps": self.rate(now),
            "acked_MBps": round(sum(b for _, b in acked) / dt / 1e6, 3),
            "consumed_MBps": round(sum(b for _, b in consumed) / dt / 1e6, 3),
            "brokers_ready": self._ready, "brokers_draining": self._draining,
            "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
            "p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "lag_records": self.ledger.lag(),
            "broker_MBps": {n: round(v, 3) for n, v in sorted(per_broker.items())},
        })
        self.last = now

    def save_cluster(self, path: Path) -> None:
        for r in self.brokers():
            if r["state"] == "ready":
                try:
                    path.write_text(json.dumps(get_json(f"http://{r['http']}/v1/cluster"), indent=1))
                    return
                except OSError:
                    continue

    def final_scrape(self) -> dict[str, dict[str, float]]:
        for r in self.brokers():
            if r["state"] in ("ready", "draining"):
                try:
                    self.last_counters[r["http"]] = scrape(r["http"])
                except OSError:
                    pass
        return dict(self.last_counters)


def move_windows(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Wall-clock intervals in which leadership was moving: balancer plans and drains, +2 s after each."""
    out: list[tuple[float, float]] = []
    started: dict[int, float] = {}
    for e in events:
        if e["event"] == "plan":
            out.append((e["t"] - e["seconds"], e["t"] + 2.0))
        elif e["event"] == "drain_started":
            started[e["index"]] = e["t"]
        elif e["event"] == "drain_exited":
            out.append((started.get(e["index"], e["t"]), e["t"] + 2.0))
    return out


def observed_balance(rows: list[dict[str, Any]], events: list[dict[str, Any]], *, band: float = 0.2,
                     smooth: int = 3) -> list[float | None]:
    """Per scale-out: seconds from the last new broker ready until the brokers' *measured* bytes in
    (a ``smooth``-second moving average of the 1 s samples) are all within ``band`` of their mean.

    Slower than the balancer's own verdict by the sampling: a new broker's first rate needs two
    scrapes. None when the load never evened out before the next scale event.
    """
    out: list[float | None] = []
    scale_events = sorted(e["t"] for e in events if e["event"] in ("scale_out", "scale_in"))
    for i, e in enumerate(events):
        if e["event"] != "scale_out":
            continue
        ready = [r["t"] for r in events[i + 1:] if r["event"] == "broker_ready"][: e["desired"] - e["current"]]
        if not ready:
            continue
        t_ready = max(ready)
        until = min([t for t in scale_events if t > e["t"]] or [float("inf")])
        found = None
        for j in range(len(rows)):
            if rows[j]["t"] < t_ready or rows[j]["t"] > until:
                continue
            window = rows[max(0, j - smooth + 1): j + 1]
            nodes = set(rows[j]["broker_MBps"])
            if len(nodes) < e["desired"] or any(set(w["broker_MBps"]) != nodes for w in window):
                continue
            avg = {n: sum(w["broker_MBps"][n] for w in window) / len(window) for n in nodes}
            mean = sum(avg.values()) / len(avg)
            if mean > 0 and all(abs(v - mean) <= band * mean for v in avg.values()):
                found = round(rows[j]["t"] - t_ready, 2)
                break
        out.append(found)
    return out


def lost_by_partition(missing: list[tuple[int, int, int]]) -> dict[int, tuple[int, int]]:
    """partition -> (records missing, first missing offset)."""
    out: dict[int, tuple[int, int]] = {}
    for p, o, _ in missing:
        n, first = out.get(p, (0, o))
        out[p] = (n + 1, min(first, o))
    return out


def data_object_bytes(state: Path, cluster: str) -> int:
    root = state / "data" / cluster / "data"
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0


def summarize(args: argparse.Namespace, preset: Preset, state: Path, cluster: str, ledger: Ledger,
              sampler: Sampler, events: list[dict[str, Any]], final: dict[str, dict[str, float]], t0: float,
              phase_ends: list[float], produced_until: float, caught_up_at: float | None,
              up_code: int | None) -> dict[str, Any]:
    windows = move_windows(events)

    def in_moves(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    during = [lat for s, lat in ledger.latencies if in_moves(s)]
    steady = [lat for s, lat in ledger.latencies if not in_moves(s)]
    spike_steady = [lat for s, lat in ledger.latencies
                    if not in_moves(s) and phase_ends[0] <= s < phase_ends[1]]
    missing = ledger.missing(reread=True)
    acked = sum(len(a) for a in ledger.acked)
    ready_counts = [r["brokers_ready"] for r in sampler.rows]
    plans = [e for e in events if e["event"] == "plan"]
    drains = [e for e in events if e["event"] == "drain_exited"]
    balanced = [e["seconds"] for e in events if e["event"] == "balanced"]
    data_written = sum(c.get("written_data", 0.0) for c in final.values())
    wal_written = sum(c.get("written_wal", 0.0) for c in final.values())
    bytes_in = sum(c.get("floe_bytes_in_total", 0.0) for c in final.values())
    write_csv(args.csv, sampler.rows, t0)
    if args.png:
        plot(args.png, sampler.rows, t0, windows, phase_ends, preset)

    def ms(v: float | None) -> float | None:
        return round(v * 1000, 1) if v is not None else None

    return {
        "brokers_min": min(ready_counts) if ready_counts else None,
        "brokers_max": max(ready_counts) if ready_counts else None,
        "brokers_final": ready_counts[-1] if ready_counts else None,
        "balanced_seconds": max(balanced) if balanced else None,
        "balanced_seconds_each": balanced,
        "balanced_seconds_observed": observed_balance(sampler.rows, events),
        "acked": acked,
        "lost": len(missing),
        "unconsumed_by_consumer": ledger.unconsumed,
        "delivery_errors": len(ledger.errors),
        "produce_refused_locally": ledger.refused,
        "delivery_error_kinds": Counter(e.split(": ", 1)[1] for e in ledger.errors).most_common(3),
        "delivery_errors_by_partition": dict(sorted(Counter(int(e.split()[1].rstrip(":"))
                                                            for e in ledger.errors).items())),
        "lost_by_partition": {p: [n, first] for p, (n, first) in sorted(lost_by_partition(missing).items())},
        "consumer_error_kinds": Counter(ledger.consumer_errors).most_common(3),
        "partitions_moved": sum(sampler.leader_changes),
        "topic_partitions_moved": sampler.leader_changes[1],
        "balancer_moves": sum(e["moves"] - e["errors"] for e in plans),
        "move_seconds_max": max((e["seconds"] for e in plans), default=None),
        "record_bytes_copied": int(data_written + data_object_bytes(state, cluster)),
        "wal_bytes_written": int(wal_written),
        "bytes_in": int(bytes_in),
        "p99_ms_steady": ms(pct(steady, 0.99)),
        "p99_ms_spike_steady": ms(pct(spike_steady, 0.99)),
        "p99_ms_during_moves": ms(pct(during, 0.99)),
        "p50_ms_steady": ms(pct(steady, 0.5)),
        "scale_outs": sum(1 for e in events if e["event"] == "scale_out"),
        "drains": len(drains),
        "drain_exit_codes": sorted({e["code"] for e in drains}),
        "consumer": args.consumer,
        "consumer_caught_up": caught_up_at is not None,
        "catchup_seconds": round(caught_up_at - produced_until, 2) if caught_up_at else None,
        "max_lag_records": max((r["lag_records"] for r in sampler.rows), default=None),
        "local_up_exit": up_code,
        "duration_s": round(time.time() - t0, 1),
        "rates_MBps": [preset.base_mb, preset.spike_mb],
        "target_MBps_per_broker": preset.target_mb,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}",
    }


def write_csv(path: str, rows: list[dict[str, Any]], t0: float) -> None:
    nodes = sorted({n for r in rows for n in r["broker_MBps"]})
    cols = ["t_s", "phase", "offered_MBps", "acked_MBps", "consumed_MBps", "brokers_ready", "brokers_draining",
            "p50_ms", "p99_ms", "lag_records", *[f"broker{n}_MBps" for n in nodes]]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([round(r["t"] - t0, 1), r["phase"], r["offered_MBps"], r["acked_MBps"], r["consumed_MBps"],
                        r["brokers_ready"], r["brokers_draining"], r["p50_ms"], r["p99_ms"], r["lag_records"],
                        *[r["broker_MBps"].get(n, "") for n in nodes]])


def plot(path: str, rows: list[dict[str, Any]], t0: float, windows: list[tuple[float, float]],
         phase_ends: list[float], preset: Preset) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] - t0 for r in rows]
    fig, ax = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    ax[0].plot(t, [r["offered_MBps"] for r in rows], "k--", lw=1, label="offered")
    ax[0].plot(t, [r["acked_MBps"] for r in rows], label="produced (acked)")
    ax[0].plot(t, [r["consumed_MBps"] for r in rows], label="consumed", alpha=0.7)
    ax[0].set_ylabel("MB/s")
    ax[0].set_title("Floe spike: total throughput")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[1].step(t, [r["brokers_ready"] for r in rows], where="post", label="ready")
    ax[1].step(t, [r["brokers_draining"] for r in rows], where="post", label="draining")
    ax[1].set_ylabel("brokers")
    ax[1].legend(loc="upper right", fontsize=8)
    nodes = sorted({n for r in rows for n in r["broker_MBps"]})
    for n in nodes:
        raw = [r["broker_MBps"].get(n) for r in rows]
        smooth = [None if raw[i] is None else
                  sum(v for v in raw[max(0, i - 2): i + 1] if v is not None)
                  / sum(1 for v in raw[max(0, i - 2): i + 1] if v is not None) for i in range(len(raw))]
        ax[2].plot(t, smooth, lw=1, label=f"node {n}")
    ax[2].axhline(preset.target_mb, color="grey", ls=":", lw=1, label="target")
    ax[2].set_ylabel("bytes in, MB/s")
    ax[2].set_title("per-broker load (3 s average)")
    ax[2].legend(loc="upper right", fontsize=7, ncol=4)
    ax[3].plot(t, [r["p99_ms"] for r in rows], color="C3", label="p99")
    ax[3].plot(t, [r["p50_ms"] for r in rows], color="C2", lw=1, label="p50")
    ax[3].set_ylabel("produce latency, ms")
    ax[3].set_yscale("log")
    ax[3].set_xlabel("seconds")
    ax[3].legend(loc="upper right", fontsize=8)
    for a in ax:
        for lo, hi in windows:
            a.axvspan(lo - t0, hi - t0, color="orange", alpha=0.12, lw=0)
        for e in phase_ends:
            a.axvline(e - t0, color="grey", lw=0.8, ls="--")
    ax[3].text(0.01, 0.9, "shaded: partition moves (balancer plans, drains)", transform=ax[3].transAxes, fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the compressed run (CI): lower rates, short phases")
    ap.add_argument("--consumer", choices=["group", "assign"], default="group",
                    help="a consumer group (subscribe) or manual assign() of every partition")
    ap.add_argument("--partitions", type=int, default=24)
    ap.add_argument("--record-bytes", type=int, default=1000)
    ap.add_argument("--max-brokers", type=int, default=5)
    ap.add_argument("--base-mb", type=float, default=None)
    ap.add_argument("--spike-mb", type=float, default=None)
    ap.add_argument("--base-s", type=float, default=None)
    ap.add_argument("--spike-s", type=float, default=None)
    ap.add_argument("--after-s", type=float, default=None)
    ap.add_argument("--target-mb", type=float, default=None, help="autoscaler target, MB in per broker per s")
    ap.add_argument("--prometheus", default="auto", help="auto | off | path (passed to floe local up)")
    ap.add_argument("--dir", default=None, help="state directory (default: a temp dir)")
    ap.add_argument("--keep-data", action="store_true", help="keep the object store (default: only logs and events)")
    ap.add_argument("--csv", default=str(ROOT / "docs" / "spike.csv"))
    ap.add_argument("--png", default=str(ROOT / "docs" / "spike.png"), help="'' for no plot")
    args = ap.parse_args()
    summary = run(args)
    print(f"""
spike: {summary['rates_MBps'][0]} -> {summary['rates_MBps'][1]} MB/s offered, target \
{summary['target_MBps_per_broker']} MB/s per broker
  brokers {summary['brokers_min']} -> {summary['brokers_max']} -> {summary['brokers_final']} \
({summary['scale_outs']} scale-outs, {summary['drains']} drains, exit codes {summary['drain_exit_codes']})
  new broker ready -> balanced: {summary['balanced_seconds_each']} s (balancer's verdict), \
{summary['balanced_seconds_observed']} s (measured bytes in per broker within 20%, 3 s average)
  partitions moved {summary['partitions_moved']} ({summary['topic_partitions_moved']} of the topic; \
the balancer planned {summary['balancer_moves']}), record bytes copied {summary['record_bytes_copied']}
  acked {summary['acked']}, lost {summary['lost']}, delivery errors {summary['delivery_errors']}; \
consumer ({summary['consumer']}) caught up: {summary['consumer_caught_up']} \
(missed {summary['unconsumed_by_consumer']})
  produce p99 steady {summary['p99_ms_steady']} ms, during moves {summary['p99_ms_during_moves']} ms
  timeline {args.csv}  plot {args.png or '(none)'}""", flush=True)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
