"""Cluster metadata at scale: bucket bytes, bytes per move, move times, full Metadata, start time, RSS.

    .venv/bin/python benchmarks/scale.py --partitions 1000,10000 --brokers 3
    .venv/bin/python benchmarks/scale.py --partitions 100000 --brokers 1

For each partition count, on a fresh ``file://`` store: start ``--brokers``
brokers, create topics of ``--topic-partitions`` partitions each until the
count is reached, then report

* the metadata bytes in the bucket (``meta/cluster`` snapshot and ``meta/log/``
  deltas) and the snapshot alone (what every change wrote before deltas);
* metadata bytes written per reassignment (new ``meta/log/`` objects plus the
  snapshots written meanwhile, from the brokers' logs), over ``--moves``
  single moves;
* reassignment p50/p99 of a single move (``--moves`` of them) and of a
  100-move request (``--batches`` of them), as the controller reports them;
* a full Metadata request from a client (confluent-kafka ``list_topics()``,
  median of 5);
* the start time of one more broker joining the cluster (it leads nothing, so
  this is reading the metadata), and RSS per 1,000 partitions of that broker
  and of the controller (which leads its share).

With ``--core`` it measures instead, in this process and without brokers,
what those figures are made of: a commit (copy, change one leader, diff), a
delta applied by a broker, reading the snapshot at start, writing it, and a
full Metadata response the first time and from the per-topic cache.

One JSON line per partition count on stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from floe_broker.cluster.metadata_log import SNAPSHOT_MIN_BYTES, SNAPSHOT_RATIO, MetadataLog  # noqa: E402
from floe_broker.storage.local import FileStore  # noqa: E402
from tests.infra.broker import BrokerProcess, wait_until  # noqa: E402
from tests.test_cluster import post  # noqa: E402

FLAGS = ["--fsync", "false", "--per-partition-metrics", "false", "--session-timeout-ms", "30000",
         "--offsets-topic-partitions", "1", "--auto-create-topics", "false"]


def cluster_view(p: BrokerProcess) -> dict:  # type: ignore[type-arg]
    """``GET /v1/cluster`` with room for 100,000 partitions in the answer."""
    with urllib.request.urlopen(f"http://{p.http}/v1/cluster", timeout=300) as resp:
        return json.load(resp)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(len(s) * q + 0.5) - 1))]


def meta_files(bucket: Path) -> dict[str, int]:
    """Metadata objects in the bucket (snapshot and deltas) with their sizes."""
    meta = bucket / "scale" / "meta"
    out = {}
    with os.scandir(meta / "log") if (meta / "log").exists() else os.scandir(meta) as entries:
        for e in entries:
            if e.is_file() and not e.name.startswith(".floe-tmp-") and e.path.startswith(str(meta / "log")):
                out[f"meta/log/{e.name}"] = e.stat().st_size
    if (meta / "cluster").exists():
        out["meta/cluster"] = (meta / "cluster").stat().st_size
    return out


def snapshot_bytes_logged(procs: list[BrokerProcess], since: dict[int, int]) -> int:
    total = 0
    for i, p in enumerate(procs):
        with open(p.log_path, "rb") as f:
            f.seek(since.get(i, 0))
            for line in f:
                if b"metadata snapshot written" in line:
                    total += json.loads(line).get("bytes", 0)
    return total


def log_offsets(procs: list[BrokerProcess]) -> dict[int, int]:
    return {i: p.log_path.stat().st_size for i, p in enumerate(procs)}


def state_bytes(bucket: Path) -> int:
    """The whole metadata, as one snapshot: what every change rewrote before deltas."""

    async def load() -> int:
        store = FileStore(bucket / "scale", fsync=False)
        try:
            return len((await MetadataLog(store).load()).to_bytes())
        finally:
            await store.close()

    return asyncio.run(load())


def rss_bytes(p: BrokerProcess) -> int:
    assert p.proc is not None
    for line in Path(f"/proc/{p.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(total: int, brokers: int, per_topic: int, moves: int, batches: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="floe-scale-"))
    bucket = tmp / "bucket"
    storage = f"file://{bucket}"
    procs: list[BrokerProcess] = []
    try:
        for i in range(brokers):
            procs.append(BrokerProcess(storage=storage, cluster="scale", log_path=tmp / f"b{i}.log", env={},
                                       extra=FLAGS).start(timeout=120))
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == brokers, 60)
        bootstrap = ",".join(p.bootstrap for p in procs)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        per = min(per_topic, total)
        names = [f"scale-{i:05d}" for i in range(total // per)]
        t0 = time.monotonic()
        for start in range(0, len(names), 10):
            futures = admin.create_topics([NewTopic(n, per, 1) for n in names[start:start + 10]],
                                          operation_timeout=120, request_timeout=180)
            for f in futures.values():
                f.result(300)
        created_s = time.monotonic() - t0
        view = cluster_view(procs[0])
        controller_node = view["controller"]
        controller = next(p for p in procs if p.http == next(
            b["http"] for b in view["brokers"] if b["node_id"] == controller_node))
        leaders = {(p["topic"], p["partition"]): p["leader"] for p in view["partitions"]}
        nodes = sorted(b["node_id"] for b in view["brokers"])

        def target(key: tuple[str, int]) -> int:
            cur = leaders[key]
            others = [n for n in nodes if n != cur]
            return others[0] if others else cur

        files_before = meta_files(bucket)
        offsets = log_offsets(procs)
        created: dict[str, int] = {}
        single: list[float] = []
        keys = [(n, i) for n in names for i in range(per)]
        for m in range(moves):
            key = keys[(m * 7919) % len(keys)]
            to = target(key)
            reply = post(controller.http, "/v1/reassignments",
                         {"moves": [{"topic": key[0], "partition": key[1], "to": to}]})
            assert reply["results"][0]["error"] is None, reply
            leaders[key] = to
            single.append(reply["seconds"])
            for k, size in meta_files(bucket).items():
                if k not in files_before:
                    created.setdefault(k, size)
        written = sum(created.values()) + snapshot_bytes_logged(procs, offsets)
        hundred: list[float] = []
        for b in range(batches):
            chosen = [keys[(b * 100 + j) * 104729 % len(keys)] for j in range(100)]
            chosen = list(dict.fromkeys(chosen))
            body = {"moves": [{"topic": k[0], "partition": k[1], "to": target(k)} for k in chosen]}
            reply = post(controller.http, "/v1/reassignments", body)
            assert all(r["error"] is None for r in reply["results"]), reply
            for k, mv in zip(chosen, body["moves"], strict=True):
                leaders[k] = mv["to"]  # type: ignore[index]
            hundred.append(reply["seconds"])
        metadata_times = []
        for _ in range(5):
            t1 = time.perf_counter()
            md = admin.list_topics(timeout=120)
            metadata_times.append(time.perf_counter() - t1)
            assert sum(len(t.partitions) for t in md.topics.values()) >= total
        files = meta_files(bucket)
        snapshot = sum(v for k, v in files.items() if k.endswith("meta/cluster"))
        state_size = state_bytes(bucket)
        t2 = time.monotonic()
        joiner = BrokerProcess(storage=storage, cluster="scale", log_path=tmp / "join.log", env={},
                               extra=FLAGS).start(timeout=300)
        join_s = time.monotonic() - t2
        procs.append(joiner)
        per_k = total / 1000
        return {
            "partitions": total,
            "brokers": brokers,
            "topics": len(names),
            "create_s": round(created_s, 1),
            "metadata_bucket_bytes": sum(files.values()),
            "snapshot_bytes": snapshot,
            "whole_state_bytes": state_size,
            "metadata_bytes_per_move": round(written / moves),
            # with the snapshot the moves make due, spread over them (see MetadataLog.snapshot_due)
            "metadata_bytes_per_move_amortized": round(
                written / moves * (1 + state_size / max(SNAPSHOT_MIN_BYTES, SNAPSHOT_RATIO * state_size))),
            "move_p50_ms": round(statistics.median(single) * 1000, 1),
            "move_p99_ms": round(pct(single, 0.99) * 1000, 1),
            "move100_p50_ms": round(statistics.median(hundred) * 1000, 1) if hundred else None,
            "move100_p99_ms": round(pct(hundred, 0.99) * 1000, 1) if hundred else None,
            "full_metadata_ms": round(statistics.median(metadata_times) * 1000, 1),
            "join_start_s": round(join_s, 2),
            "joiner_rss_mb_per_1k": round(rss_bytes(joiner) / per_k / 2**20, 2),
            "controller_rss_mb_per_1k": round(rss_bytes(controller) / per_k / 2**20, 2),
            "machine": f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}",
        }
    finally:
        for p in procs:
            p.stop()


def core(total: int, per_topic: int) -> dict[str, object]:
    """The metadata work behind a move, a push, a start and a full Metadata request, in-process."""
    from types import SimpleNamespace

    from floe_broker.cluster.delta import Delta, apply, diff
    from floe_broker.cluster.metadata import BrokerInfo, ClusterState, LedPartitions
    from floe_broker.handlers import meta
    from floe_broker.protocol import codec

    state = ClusterState()
    for n in (1, 2, 3):
        state.brokers[n] = BrokerInfo(n, f"{n:016x}", "127.0.0.1", 9092 + n, f"127.0.0.1:{9644 + n}", 0)
    per = min(per_topic, total)
    for i in range(total // per):
        state.create_topic(f"scale-{i:05d}", per)

    def timed(fn, repeat: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
        best, out = float("inf"), None
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    def commit() -> bytes:
        new = state.copy()
        p = new.topics["scale-00000"].partitions[7]
        new.set_leader("scale-00000", 7, 1 + p.leader % 3)
        new.version += 1
        return diff(state, new).to_bytes()

    commit_s, delta = timed(commit)
    apply_s, _ = timed(lambda: apply(state, Delta.from_bytes(delta)))  # type: ignore[arg-type]
    snapshot_s, raw = timed(state.to_bytes, 3)
    load_s, _ = timed(lambda: ClusterState.from_bytes(raw), 3)  # type: ignore[arg-type]
    led = LedPartitions()
    led.of(state, 1)
    led_s, _ = timed(lambda: led.of(apply(state, Delta.from_bytes(delta)), 1))  # type: ignore[arg-type]

    class Ctx:
        cluster_id = "scale"
        config = SimpleNamespace(auto_create_topics=False, default_partitions=1, authorizer_enabled=False)

        def state(self) -> ClusterState:
            return state

        def controller_node(self) -> int:
            return 1

    ctx, req = Ctx(), SimpleNamespace(topics=None, allow_auto_topic_creation=False)

    def full_metadata() -> int:
        body = asyncio.run(meta.metadata(ctx, 12, req))  # type: ignore[arg-type]
        return sum(len(p) for p in codec.encode_response(3, 12, 1, body))

    first_s, size = timed(full_metadata, 1)
    cached_s, _ = timed(full_metadata)
    return {
        "partitions": total, "mode": "core",
        "commit_one_move_ms": round(commit_s * 1000, 2), "delta_bytes": len(delta),  # type: ignore[arg-type]
        "apply_delta_ms": round(apply_s * 1000, 2), "led_partitions_after_move_ms": round(led_s * 1000, 2),
        "snapshot_bytes": len(raw), "write_snapshot_ms": round(snapshot_s * 1000, 1),  # type: ignore[arg-type]
        "read_snapshot_ms": round(load_s * 1000, 1),
        "full_metadata_first_ms": round(first_s * 1000, 1), "full_metadata_cached_ms": round(cached_s * 1000, 1),
        "full_metadata_bytes": size,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", default="1000,10000", help="comma-separated partition counts")
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--topic-partitions", type=int, default=1000)
    ap.add_argument("--moves", type=int, default=100)
    ap.add_argument("--batches", type=int, default=10, help="100-move reassignments")
    ap.add_argument("--core", action="store_true", help="in-process costs only, no brokers")
    args = ap.parse_args()
    for total in (int(x) for x in args.partitions.split(",")):
        if args.core:
            result = core(total, args.topic_partitions)
        else:
            result = run(total, args.brokers, args.topic_partitions, args.moves, args.batches)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
