"""The soak: a 3-broker cluster under load for minutes, with a random fault every so often.

Why a soak beside the single-fault tests: each of those proves one fault in a
fresh cluster. Production meets them one after another, in a cluster that has
already failed over, been rebalanced and browned out, with producer and
consumer state carried across all of it; leaks (memory, file descriptors) and
state that only goes wrong the third time show up only there.

Workload: two idempotent acks=all producers, a consumer group reading the same
topic, and a transactional writer (``tests/txn/ledger.py``), against three
broker processes on a moto S3 bucket reached through the fault proxy
(``tests/infra/s3_fault_proxy.py``, its own process so its forwarding does not
compete with the clients for this process's GIL). Partitions are moved
through the admin API every ``rebalance_every_s``; between them faults are
drawn from :data:`FAULT_KINDS`.

Every random choice comes from one seed (printed first; ``SOAK_SEED`` replays
it): the schedule (when, which fault, how long) is made up front from it, and
the choices that depend on the cluster at that moment (which broker, which
partition, which target) are made by index into the sorted live set, also from
it. The run directory (``.soak/<UTC time>-<seed>/``) holds the schedule, the
event log, the resource samples, the verdict and every broker's log; the logs
are removed when the run passes and kept when it fails.

At the end, the verdict: no acknowledged record lost, no offset with two
values, no value twice (the producers are idempotent), read_committed sees
exactly the committed transactions, the consumer group saw every acknowledged
record, no acknowledgement while the store was down, producers acknowledged
again after every fault, no broker exited unless a fault made it, and no
broker's RSS or open files grew without bound.

Run: ``make soak`` (``SOAK_MINUTES``, default 30; ``SOAK_SEED``;
``SOAK_CHECKER_RUNS``, default 10, repeats of the history checker after it).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.conftest import s3_spec
from tests.infra.broker import ROOT, BrokerProcess, free_port, wait_until
from tests.infra.moto_server import MotoServer
from tests.infra.s3_fault_proxy import control
from tests.test_clients import create_topic
from tests.test_cluster import post
from tests.txn.ledger import TxnLedger

FAULT_KINDS = ("kill9", "pause", "drain", "slowdown", "latency", "outage", "reset")
# A network partition needs each broker in its own network namespace with a route to the
# bucket; the soak's brokers and moto share the host's loopback, so it is not drawn here.
SKIPPED_KINDS = {"partition": "the soak's brokers and moto share the host loopback (no per-broker "
                              "network namespace); tests/reliability/test_partition.py covers it"}
PARTITIONS = 6
TXN_PARTITIONS = 3
SESSION_TIMEOUT_MS = 6000
GRACE_S = 2.0  # an acknowledgement's callback may run this long after the broker sent it
# librdkafka's connection errors while brokers are killed are expected; they go to the run's
# clients.log (see run()) rather than the console.
CLIENT_LOG = logging.getLogger("soak.clients")
CLIENT_LOG.propagate = False
CLIENT_LOG.addHandler(logging.NullHandler())  # between runs: dropped, not printed as a last resort


@dataclass(frozen=True)
class Profile:
    """How long the run is and how hard each fault hits."""

    minutes: float
    rebalance_every_s: float
    fault_gap_s: tuple[float, float]  # quiet time between the end of one fault and the next
    brownout_s: float  # 503 SlowDown storms and connection resets
    latency_s: float  # added to each delayed request
    latency_every: int  # every Nth request is delayed (1: all)
    latency_for_s: float
    outage_s: float
    warmup_s: float = 20.0
    tail_s: float = 30.0  # no fault starts this close to the end

    @staticmethod
    def for_minutes(minutes: float) -> Profile:
        """Long brownouts (2-minute storms, p99 of 5 s for 5 minutes, a 5-minute outage) from 20 minutes
        up; shorter runs scale every fault down so several fit."""
        if minutes >= 20:
            return Profile(minutes, 60, (100, 140), brownout_s=120, latency_s=5.0, latency_every=20,
                           latency_for_s=300, outage_s=300)
        return Profile(minutes, 30, (40, 60), brownout_s=20, latency_s=2.0, latency_every=1,
                       latency_for_s=20, outage_s=12)


@dataclass
class Fault:
    at_s: float
    kind: str
    duration_s: float
    pick: float  # which broker / partition, as a fraction of the sorted live set


def fault_schedule(rng: random.Random, profile: Profile) -> list[Fault]:
    """Faults in time order; kinds come from shuffled bags of every kind, so each appears before any repeats."""
    session_s = SESSION_TIMEOUT_MS / 1000
    durations = {"kill9": 0.0, "pause": 2 * session_s, "drain": 0.0, "slowdown": profile.brownout_s,
                 "latency": profile.latency_for_s, "outage": profile.outage_s, "reset": profile.brownout_s}
    end = profile.minutes * 60 - profile.tail_s
    out: list[Fault] = []
    bag: list[str] = []
    t = profile.warmup_s
    while True:
        if not bag:
            bag = list(FAULT_KINDS)
            rng.shuffle(bag)
        kind = bag.pop()
        if t + durations[kind] > end:
            # a long fault that no longer fits: try a short one once, then stop
            short = [k for k in bag if t + durations[k] <= end]
            if not short:
                break
            kind = short[0]
            bag.remove(kind)
        out.append(Fault(round(t, 1), kind, durations[kind], rng.random()))
        t += durations[kind] + rng.uniform(*profile.fault_gap_s)
    return out


class AckLedger:
    """An idempotent acks=all producer on every partition; each acknowledgement with its time."""

    def __init__(self, name: str, bootstrap: str, topic: str) -> None:
        self.name, self.bootstrap, self.topic = name, bootstrap, topic
        self.acked: dict[tuple[int, int], bytes] = {}
        self.ack_times: list[float] = []
        self.conflicts: list[str] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"producer-{name}", daemon=True)

    def _run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5, "message.timeout.ms": 600000, "topic.metadata.refresh.interval.ms": 1000,
                      "logger": CLIENT_LOG})

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            now = time.monotonic()
            with self.lock:
                if err is None:
                    key = (msg.partition(), msg.offset())
                    if key in self.acked and self.acked[key] != msg.value():
                        self.conflicts.append(f"offset {key} acknowledged for two values")
                    self.acked[key] = msg.value()
                    self.ack_times.append(now)
                elif not err.retriable():
                    self.errors.append(str(err))

        i = 0
        while not self.stop.is_set():
            try:
                p.produce(self.topic, value=f"{self.name}-{i}".encode(), partition=i % PARTITIONS,
                          on_delivery=on_delivery)
                i += 1
            except BufferError:
                p.poll(0.1)
            except KafkaException as exc:  # fatal idempotence error: recorded, then a new producer
                with self.lock:
                    self.errors.append(str(exc))
                p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                              "logger": CLIENT_LOG})
            p.poll(0.003)
            time.sleep(0.004)
        left = p.flush(120)
        if left:
            with self.lock:
                self.errors.append(f"{left} records still unacknowledged 120 s after the producer stopped")

    def first_ack_after(self, t: float) -> float | None:
        with self.lock:
            later = [a for a in self.ack_times if a > t]
        return min(later) if later else None

    def acks_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for a in self.ack_times if t0 < a < t1)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


class SoakTxnLedger(TxnLedger):
    """The history checker's transactional writer, made to outlast long outages: it keeps trying to
    (re)initialise its producer for as long as the run lasts instead of for two minutes, and a writer
    that stops anyway is recorded, so the verdict can say so."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.died: str | None = None

    def _producer(self) -> Producer:
        while True:
            try:
                return super()._producer()
            except KafkaException as exc:
                if self.stop.is_set() or not exc.args[0].retriable():
                    raise
                time.sleep(1)

    def _run(self) -> None:
        try:
            super()._run()
        except Exception as exc:  # noqa: BLE001 - reported in the verdict
            if not self.stop.is_set():
                self.died = repr(exc)


class GroupReader:
    """A consumer group member reading the producers' topic with auto-commit; what it saw, with repeats."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.seen: Counter[bytes] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.group = f"soak-{uuid.uuid4().hex[:6]}"
        self.thread = threading.Thread(target=self._run, name="group-reader", daemon=True)

    def _run(self) -> None:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "session.timeout.ms": 20000, "topic.metadata.refresh.interval.ms": 1000,
                      "logger": CLIENT_LOG})
        c.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                msg = c.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().fatal():
                        with self.lock:
                            self.errors.append(str(msg.error()))
                    continue
                with self.lock:
                    self.seen[msg.value()] += 1
        finally:
            c.close()

    def missing(self, values: set[bytes]) -> int:
        with self.lock:
            return sum(1 for v in values if v not in self.seen)


class ResourceSampler:
    """RSS and open file descriptors of every live broker, from /proc, every few seconds."""

    def __init__(self, pids: Callable[[], list[int]], path: Path, every_s: float = 5.0) -> None:
        self.pids, self.path, self.every_s = pids, path, every_s
        self.samples: list[tuple[float, int, int, int]] = []  # (t, pid, rss kB, fds)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        with open(self.path, "w") as out:
            out.write("t_s,pid,rss_kb,fds\n")
            t0 = time.monotonic()
            while not self.stop.wait(self.every_s):
                for pid in self.pids():
                    sample = read_proc(pid)
                    if sample is not None:
                        t = time.monotonic() - t0
                        self.samples.append((t, pid, *sample))
                        out.write(f"{t:.1f},{pid},{sample[0]},{sample[1]}\n")
                out.flush()

    def growth(self) -> dict[str, float]:
        """Max RSS (MiB) and max open files over all brokers in the first and last third of the run."""
        if not self.samples:
            return {}
        end = self.samples[-1][0]
        first = [s for s in self.samples if s[0] <= end / 3]
        last = [s for s in self.samples if s[0] >= 2 * end / 3]
        return {"rss_first_mib": max(s[2] for s in first) / 1024, "rss_last_mib": max(s[2] for s in last) / 1024,
                "fds_first": max(s[3] for s in first), "fds_last": max(s[3] for s in last)}


def proxy_drained(endpoint: str) -> float | None:
    """The time at which the fault proxy has no request in flight upstream, or None."""
    with urllib.request.urlopen(endpoint.rstrip("/") + "/__faults__", timeout=10) as resp:
        return time.monotonic() if json.loads(resp.read())["inflight"] == 0 else None


def read_proc(pid: int) -> tuple[int, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None  # exited between listing and reading


def growth_violations(g: dict[str, float]) -> list[str]:
    """Unbounded growth, with room for what grows legitimately: caches filling up to their bounds,
    pending bytes held through an outage in the last third, and a replacement broker's warm-up."""
    if not g:
        return ["no resource samples"]
    out = []
    if g["rss_last_mib"] > 2.5 * g["rss_first_mib"] + 64:
        out.append(f"RSS grew from {g['rss_first_mib']:.0f} MiB to {g['rss_last_mib']:.0f} MiB")
    if g["fds_last"] > 2 * g["fds_first"] + 64:
        out.append(f"open files grew from {g['fds_first']:.0f} to {g['fds_last']:.0f}")
    return out


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 180) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of every partition from offset 0 to its high watermark, as (offset, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 8 << 20, "max.partition.fetch.bytes": 4 << 20,
                  "logger": CLIENT_LOG})
    try:
        highs = {p: wait_until(lambda p=p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10),
                               120, interval=1, message=f"the high watermark of partition {p}")[1]
                 for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions) if highs[p] > 0])
        out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
        done = {p for p in range(partitions) if highs[p] == 0}
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            if time.monotonic() > deadline:
                got = sum(map(len, out.values()))
                raise TimeoutError(f"read back {got} records; partitions left {set(highs) - done}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out[msg.partition()].append((msg.offset(), msg.value()))
            if msg.offset() + 1 >= highs[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        c.close()


@dataclass
class Verdict:
    seed: int
    minutes: float
    ok: bool = False
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    run_dir: str = ""


class Soak:
    """One soak run: cluster, clients, the schedule played out, then the verdict."""

    def __init__(self, profile: Profile, seed: int, run_dir: Path) -> None:
        self.profile, self.seed, self.run_dir = profile, seed, run_dir
        self.rng = random.Random(seed)
        self.schedule = fault_schedule(self.rng, profile)
        self.brokers: list[BrokerProcess] = []
        self.expected_exit: set[int] = set()  # ids of BrokerProcess objects a fault stopped
        self.verdict = Verdict(seed, profile.minutes, skipped=dict(SKIPPED_KINDS), run_dir=str(run_dir))
        self.outages: list[tuple[float, float]] = []
        self.fault_ends: list[tuple[str, float]] = []
        self.t0 = time.monotonic()
        self.events = open(run_dir / "events.log", "w")  # noqa: SIM115 - closed in run()

    # --- bookkeeping ---------------------------------------------------------

    def log(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {text}"
        print(line, flush=True)
        self.events.write(line + "\n")
        self.events.flush()

    def violation(self, text: str) -> None:
        self.log(f"VIOLATION: {text}")
        self.verdict.violations.append(text)

    def live(self) -> list[BrokerProcess]:
        return [b for b in self.brokers if b.proc is not None and b.proc.poll() is None]

    def view(self) -> dict:  # type: ignore[type-arg]
        for b in self.live():
            status, body = b.get("/v1/cluster")
            if status == 200 and body.get("brokers"):  # a broker between controllers may answer an empty view
                return body
        raise RuntimeError("no live broker answers /v1/cluster")

    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.live())

    # --- the cluster ---------------------------------------------------------

    def start_broker(self, retry: bool = True) -> BrokerProcess:
        n = len(self.brokers)
        b = BrokerProcess(storage=self.store.url, cluster="soak", log_path=self.run_dir / f"broker-{n}.log",
                          env=self.store.env, extra=[*self.store.flags, "--session-timeout-ms",
                                                     str(SESSION_TIMEOUT_MS)],
                          kafka_port=free_port(), http_port=free_port())
        self.brokers.append(b)
        try:
            b.start(timeout=180)
        except (RuntimeError, TimeoutError) as exc:
            # A replacement that cannot join is a finding, not the end of the run: record it, try once more.
            self.expected_exit.add(id(b))
            b.stop()
            self.violation(f"broker {n} did not start: {str(exc).splitlines()[0]}")
            if retry:
                return self.start_broker(retry=False)
            raise
        self.log(f"broker {n} started (pid {b.proc.pid if b.proc else '?'})")
        return b

    def node_of(self, b: BrokerProcess) -> int | None:
        try:
            return next(x["node_id"] for x in self.view()["brokers"] if x["http"] == b.http)
        except (StopIteration, RuntimeError):
            return None

    def is_member(self, b: BrokerProcess) -> bool:
        try:
            return any(x["http"] == b.http for x in self.view()["brokers"])
        except RuntimeError:
            return False

    def replace_unexpected_exits(self) -> None:
        for b in list(self.brokers):
            if b.proc is not None and b.proc.poll() is not None and id(b) not in self.expected_exit:
                self.expected_exit.add(id(b))
                code = b.proc.returncode
                if code == 3:  # failed by the controller while alive (a false failover): legal, reported
                    self.log(f"{b.log_path.name} was failed by the controller and exited 3; replacing it")
                    self.verdict.counts["false_failovers"] = self.verdict.counts.get("false_failovers", 0) + 1
                else:
                    self.violation(f"{b.log_path.name} exited with {code} without a fault stopping it")
                self.start_broker()

    def stop_all(self) -> None:
        for b in self.brokers:
            if b.proc is not None and b.proc.poll() is None:
                try:
                    b.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
            b.stop()

    # --- rebalances and faults -------------------------------------------------

    def rebalance(self) -> None:
        """Move one to three partitions, each to another live broker chosen from the seed."""
        k = 1 + int(self.rng.random() * 3)
        picks = [(self.rng.random(), self.rng.random()) for _ in range(k)]
        try:
            view = self.view()
            nodes = sorted(x["node_id"] for x in view["brokers"])
            parts = sorted((p["topic"], p["partition"], p["leader"]) for p in view["partitions"]
                           if p["topic"] in (self.topic, self.txn_topic))
            if not parts:
                self.log(f"rebalance: no partitions of the soak's topics in the view: {json.dumps(view)[:2000]}")
                return
            moves = []
            for pp, pt in picks:
                topic, part, leader = parts[int(pp * len(parts))]
                targets = [n for n in nodes if n != leader] or nodes
                moves.append({"topic": topic, "partition": part, "to": targets[int(pt * len(targets))]})
            reply = post(self.live()[0].http, "/v1/reassignments", {"moves": moves})
            errors = [r["error"] for r in reply["results"] if r["error"]]
            self.log(f"rebalance: {len(moves)} moves in {reply.get('seconds', 0) * 1000:.0f} ms"
                     + (f", errors {errors}" if errors else ""))
        except urllib.error.HTTPError as exc:
            self.log(f"rebalance refused now: HTTP {exc.code} {exc.read()[:300]!r}")
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            self.log(f"rebalance not possible now: {exc!r}")

    def victim(self, pick: float) -> BrokerProcess:
        live = self.live()
        return live[int(pick * len(live))]

    def fault(self, f: Fault) -> None:
        """Start fault ``f``; brownouts and pauses end through :meth:`end_fault` after their duration."""
        self.log(f"fault {f.kind} for {f.duration_s:.0f} s")
        f_started = time.monotonic()
        self.verdict.faults.append(f"{f.kind}@{f.at_s:.0f}s")
        ep = self.proxy_endpoint
        if f.kind == "kill9":
            b = self.victim(f.pick)
            self.expected_exit.add(id(b))
            b.kill9()
            self.log(f"killed {b.log_path.name} with -9")
            self.start_broker()
        elif f.kind == "drain":
            b = self.victim(f.pick)
            self.expected_exit.add(id(b))
            code = b.terminate(180)
            self.log(f"drained {b.log_path.name}: exit {code}")
            if code != 0:
                self.violation(f"drained {b.log_path.name} exited {code}, not 0")
            self.start_broker()
        elif f.kind == "pause":
            self.paused = self.victim(f.pick)
            self.expected_exit.add(id(self.paused))
            assert self.paused.proc is not None
            self.paused.proc.send_signal(signal.SIGSTOP)
        elif f.kind == "slowdown":
            control(ep, "fail", status=503, code="SlowDown", every=2)
        elif f.kind == "latency":
            control(ep, "delay", seconds=self.profile.latency_s, every=self.profile.latency_every)
        elif f.kind == "outage":
            control(ep, "fail", status=503)
            # Writes forwarded before the outage may still succeed (and be acknowledged, rightly):
            # the outage, as far as acknowledgements go, starts once the store has answered them.
            self.outage_start = wait_until(lambda: proxy_drained(ep), 120, interval=0.1,
                                           message="requests forwarded before the outage to finish")
            self.log(f"outage: every request fails from {self.outage_start - f_started:.1f} s after it began")
        elif f.kind == "reset":
            control(ep, "reset", every=3)
        if f.duration_s == 0:
            self.fault_ends.append((f.kind, time.monotonic()))

    def end_fault(self, f: Fault, started: float) -> None:
        if f.kind == "pause":
            b = self.paused
            assert b.proc is not None
            b.proc.send_signal(signal.SIGCONT)
            try:
                code: int | None = b.proc.wait(60)
            except subprocess.TimeoutExpired:
                code = None
            self.log(f"resumed {b.log_path.name} after {f.duration_s:.0f} s: exit {code}")
            if code is None and self.is_member(b):
                # No controller failed it while it was stopped (under load the lease itself can lapse,
                # and then nobody judges sessions): it is still a member, and stays one.
                self.log(f"{b.log_path.name} was not failed while paused; it carries on as a member")
                self.verdict.counts["pauses_not_failed"] = self.verdict.counts.get("pauses_not_failed", 0) + 1
                self.expected_exit.discard(id(b))
                self.fault_ends.append((f.kind, time.monotonic()))
                return
            if code != 3:
                self.violation(f"{b.log_path.name} paused past its session timeout exited {code}, "
                               "neither fenced (3) nor still a member")
                b.stop()
            self.start_broker()
        else:
            control(self.proxy_endpoint, "heal")
            self.log(f"healed the store after {f.kind}")
            if f.kind == "outage":
                self.outages.append((self.outage_start, time.monotonic()))
        self.fault_ends.append((f.kind, time.monotonic()))

    # --- the run ----------------------------------------------------------------

    def run(self) -> Verdict:
        (self.run_dir / "schedule.json").write_text(json.dumps(
            {"seed": self.seed, "profile": asdict(self.profile), "faults": [asdict(f) for f in self.schedule],
             "skipped": SKIPPED_KINDS}, indent=1))
        self.log(f"soak seed {self.seed}: {self.profile.minutes:g} min, {len(self.schedule)} faults: "
                 + ", ".join(f"{f.kind}@{f.at_s:.0f}s" for f in self.schedule))
        for kind, reason in SKIPPED_KINDS.items():
            self.log(f"fault kind '{kind}' not drawn: {reason}")
        handler = logging.FileHandler(self.run_dir / "clients.log")
        CLIENT_LOG.addHandler(handler)
        moto = MotoServer().start()
        proxy = subprocess.Popen([sys.executable, "-m", "tests.infra.s3_fault_proxy", moto.endpoint,
                                  "--port", str(free_port())], stdout=subprocess.PIPE,
                                 stderr=open(self.run_dir / "fault-proxy.log", "wb"), cwd=ROOT)  # noqa: SIM115
        sampler = None
        try:
            assert proxy.stdout is not None
            line = proxy.stdout.readline().decode().strip()
            assert line.startswith("endpoint="), f"fault proxy did not start: {line!r}"
            self.proxy_endpoint = line.split("=", 1)[1]
            self.store = s3_spec(moto, f"soak-{self.seed}", endpoint=self.proxy_endpoint)
            for _ in range(3):
                self.start_broker()
            wait_until(lambda: len(self.view()["brokers"]) == 3, 60, message="3 brokers registered")
            self.topic, self.txn_topic = f"soak-{self.seed}", f"soak-txn-{self.seed}"
            create_topic(self.brokers[0].bootstrap, self.topic, PARTITIONS)
            create_topic(self.brokers[0].bootstrap, self.txn_topic, TXN_PARTITIONS)
            sampler = ResourceSampler(lambda: [b.proc.pid for b in self.live() if b.proc],
                                      self.run_dir / "resources.csv")
            sampler.thread.start()
            self._play(sampler)
        except Exception as exc:  # noqa: BLE001 - the run cannot go on; the verdict says why
            self.violation(f"the run stopped early: {exc!r}"[:2000])
            self.verdict.ok = False
        finally:
            if sampler is not None:
                sampler.stop.set()
                sampler.thread.join(30)
            self.stop_all()
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(15)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(5)
            moto.stop()
            self.events.close()
            CLIENT_LOG.removeHandler(handler)
            handler.close()
        return self.verdict

    def _play(self, sampler: ResourceSampler) -> None:
        everyone = self.bootstrap()
        producers = [AckLedger(name, everyone, self.topic) for name in ("a", "b")]
        reader = GroupReader(everyone, self.topic)
        txns = SoakTxnLedger(everyone, self.txn_topic, TXN_PARTITIONS, seed=self.seed)
        for p in producers:
            p.thread.start()
        reader.thread.start()
        txns.thread.start()
        wait_until(lambda: all(p.count() > 100 for p in producers), 120, message="acks before the faults")
        start = time.monotonic()
        end = start + self.profile.minutes * 60
        pending = list(self.schedule)
        active: tuple[Fault, float] | None = None
        next_rebalance = start + self.profile.rebalance_every_s
        while time.monotonic() < end:
            now = time.monotonic()
            if active and now >= active[1] + active[0].duration_s:
                self.end_fault(*active)
                active = None
            if not active and pending and now >= start + pending[0].at_s:
                f = pending.pop(0)
                self.fault(f)
                if f.duration_s:
                    active = (f, time.monotonic())
            if now >= next_rebalance:
                self.rebalance()
                next_rebalance += self.profile.rebalance_every_s
            self.replace_unexpected_exits()
            time.sleep(0.2)
        if active:
            self.end_fault(*active)
        for f in pending:  # earlier faults or slow rebalances overran the run
            self.log(f"fault {f.kind}@{f.at_s:.0f}s not run: the run ended first")
            self.verdict.faults.append(f"{f.kind}@{f.at_s:.0f}s (not run)")
        self.replace_unexpected_exits()
        settled = time.monotonic()
        wait_until(lambda: all(p.first_ack_after(settled) for p in producers), 180, interval=0.5,
                   message="acknowledgements after the last fault")
        if txns.died or not txns.thread.is_alive():
            self.violation(f"the transactional writer stopped during the run: {txns.died}")
        self.log("schedule done; stopping the writers")
        for p in producers:
            p.stop.set()
        txns.stop.set()
        for p in producers:
            p.thread.join(180)
        txns.thread.join(180)
        self._check(producers, reader, txns, sampler)

    def _check(self, producers: list[AckLedger], reader: GroupReader, txns: SoakTxnLedger,
               sampler: ResourceSampler) -> None:
        v, counts = self.verdict, self.verdict.counts
        acked: dict[tuple[int, int], bytes] = {}
        for p in producers:
            v.violations.extend(p.conflicts)
            v.violations.extend(f"producer {p.name}: {e}" for e in p.errors)
            for key, value in p.acked.items():
                if key in acked and acked[key] != value:
                    self.violation(f"offset {key} acknowledged to two producers")
                acked[key] = value
        counts["acknowledged"] = len(acked)
        for (a, b) in self.outages:
            n = sum(p.acks_between(a + GRACE_S, b) for p in producers)
            counts["acked_during_outages"] = counts.get("acked_during_outages", 0) + n
            if n:
                last = max(t for p in producers for t in p.ack_times if a + GRACE_S < t < b)
                self.violation(f"{n} records acknowledged while every store request failed "
                               f"(the last {last - a:.1f} s after the store had answered its last request)")
        for kind, t in self.fault_ends:
            firsts = [p.first_ack_after(t) for p in producers]
            if any(f is None for f in firsts):
                self.violation(f"a producer never acknowledged again after {kind}")
            else:
                recovery = max(firsts) - t  # type: ignore[type-var, operator]
                v.figures[f"recovery_max_s_{kind}"] = max(v.figures.get(f"recovery_max_s_{kind}", 0.0),
                                                          round(recovery, 1))

        log = read_all(self.bootstrap(), self.topic, PARTITIONS)
        values = Counter(val for recs in log.values() for _, val in recs)
        by_offset: dict[tuple[int, int], bytes] = {}
        for part, recs in log.items():
            offsets = Counter(o for o, _ in recs)
            twice = [o for o, c in offsets.items() if c > 1]
            if twice:
                self.violation(f"partition {part}: offsets returned twice, e.g. {twice[:5]}")
            by_offset.update({(part, o): val for o, val in recs})
        lost = [k for k, val in acked.items() if by_offset.get(k) != val]
        dups = [val for val, c in values.items() if c > 1]
        counts.update(read_back=sum(values.values()), lost=len(lost), duplicates=len(dups),
                      written_not_acknowledged=len(set(values) - set(acked.values())))
        if lost:
            self.violation(f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}")
        if dups:
            self.violation(f"{len(dups)} values written twice by idempotent producers, e.g. {dups[:5]}")

        want = set(acked.values())
        try:
            wait_until(lambda: reader.missing(want) == 0, 180, interval=1, message="the group to read every ack")
        except TimeoutError:
            self.violation(f"the consumer group never read {reader.missing(want)} acknowledged records")
        reader.stop.set()
        reader.thread.join(60)
        counts["group_read"] = sum(reader.seen.values())
        counts["group_redelivered"] = sum(c - 1 for c in reader.seen.values())
        v.violations.extend(f"group: {e}" for e in reader.errors)

        try:
            txns.verify(self.bootstrap())
        except (AssertionError, KafkaException) as exc:
            self.violation(f"transactions: {exc}")
        counts.update(txn_committed=len(txns.committed), txn_aborted=len(txns.aborted),
                      txn_unknown=len(txns.unknown))

        growth = sampler.growth()
        v.figures.update({k: round(x, 1) for k, x in growth.items()})
        for text in growth_violations(growth):
            self.violation(text)
        counts["brokers_started"] = len(self.brokers)
        v.ok = not v.violations


def run_soak(minutes: float, seed: int | None = None, base: Path | None = None) -> Verdict:
    """One soak of ``minutes``; the run directory is kept whole when it fails."""
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = (base or ROOT / ".soak") / f"{stamp}-{seed}"
    run_dir.mkdir(parents=True)
    print(f"soak seed {seed} (replay with SOAK_SEED={seed}); run directory {run_dir}", flush=True)
    verdict = Soak(Profile.for_minutes(minutes), seed, run_dir).run()
    (run_dir / "verdict.json").write_text(json.dumps(asdict(verdict), indent=1))
    if verdict.ok:
        for log in run_dir.glob("broker-*.log"):
            log.unlink()
    print(f"soak verdict: {'PASS' if verdict.ok else 'FAIL'}; {json.dumps(verdict.counts)}; "
          f"{json.dumps(verdict.figures)}; kept in {run_dir}", flush=True)
    return verdict


def repeat_history_checker(runs: int, base: Path | None = None) -> list[str]:
    """``tests/test_history_checker.py`` (file:// store) ``runs`` times in a row; returns the failures,
    each with the directory that keeps its broker logs."""
    failures = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for i in range(1, runs + 1):
        tmp = (base or ROOT / ".soak") / f"{stamp}-checker-{i}"
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--basetemp", str(tmp),
             "tests/test_history_checker.py", "-k", "file"], cwd=ROOT, capture_output=True, text=True)
        summary = [ln for ln in result.stdout.splitlines() if ln.startswith(("ledger:", "transactions:", "history:"))]
        took = time.monotonic() - started
        if result.returncode == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"history checker run {i}/{runs}: pass in {took:.0f} s; " + "; ".join(summary), flush=True)
        else:
            (tmp / "output.txt").write_text(result.stdout + result.stderr)
            failures.append(f"run {i}: kept in {tmp}")
            print(f"history checker run {i}/{runs}: FAIL in {took:.0f} s, kept in {tmp}\n{result.stdout[-3000:]}",
                  flush=True)
    return failures


def main() -> int:
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    seed = int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else None
    runs = int(os.environ.get("SOAK_CHECKER_RUNS", "10"))
    verdict = run_soak(minutes, seed)
    for text in verdict.violations:
        print(f"  violation: {text}")
    failures = repeat_history_checker(runs) if runs else []
    print(f"history checker: {runs - len(failures)}/{runs} runs passed" + "".join(f"\n  {f}" for f in failures))
    return 0 if verdict.ok and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
