"""Key compaction as figures: the job's throughput, and what it does to produce latency.

    .venv/bin/python benchmarks/compaction.py --records 200000 --keys 20000 --value-bytes 100

1. **Throughput** (in-process, memory store, the real WAL writer, partition
   manager and compactor): a partition of ``--records`` records over
   ``--keys`` keys is consolidated, then compacted once; prints the input
   MB/s of the job (bytes of the segments read per second of the job, both
   its reads: the key map and the rewrite), the passes and the peak key-map
   size.
2. **Produce p99** (one broker process on a fresh ``file://`` store, rounds
   every 500 ms): a compacted topic is loaded with the same records, then
   1 KiB records are produced at ``--rate`` per second to another topic for
   ``--seconds`` while the compacted one is compacted; the same with
   ``cleanup.policy=delete`` on the loaded topic is the baseline. Prints the
   p50/p99 of both.

3. **Key check** (in-process): the produce-time keyless-record check of a
   compacted topic over ``--check-batches`` zstd batches of
   ``--check-records`` records each, as it was (on the event loop) and as it
   is (``compaction.produce_error``: a worker thread for compressed
   batches); prints each one's total time and the longest event-loop stall
   a 1 ms ticker saw meanwhile.

One JSON line; nothing is asserted. On a shared, loaded machine the figures
are indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "broker"), str(ROOT / "api")]

from benchmarks.common import latency_ms, machine, produce_at_rate, producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.infra.broker import free_port, wait_until  # noqa: E402


def keyed(pairs: list[tuple[bytes, bytes]]) -> bytes:
    from tests.compaction.helpers import keyed_batch

    return keyed_batch(pairs)  # type: ignore[arg-type]


async def throughput(records: int, keys: int, value_bytes: int, map_bytes: int) -> dict[str, object]:
    from floe_broker.log.manager import Settings
    from floe_broker.storage.memory import MemoryStore
    from tests.test_log_invariants import Node, topic_state

    settings = Settings(checkpoint_interval_ms=1000, compact_after_bytes=0, compact_after_ms=0, retention_ms=-1,
                        retention_bytes=-1, memory_cache_bytes=1 << 20, block_size=1 << 20,
                        compaction_map_bytes=map_bytes)
    node = Node(MemoryStore(), 1, "bench", settings)
    node.pm.topic_config = node.pm.compactor.topic_config = lambda t, k: "compact" if k == "cleanup.policy" else None
    _, topic = topic_state()
    part = await node.pm.open(topic.name, topic.topic_id, 0, epoch=1)
    value = os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
    per_batch = 500
    for first in range(0, records, per_batch):
        await node.produce(part, keyed([(b"key-%08d" % (i % keys), value) for i in range(first, first + per_batch)]))
    node.pm.compactor.kick = lambda helds: None  # type: ignore[method-assign]
    await node.pm.maintenance()  # consolidation only
    held = node.pm.held[(part.topic, part.index)]
    t0 = time.perf_counter()
    passes = await node.pm.compactor.compact(held)
    wall = time.perf_counter() - t0
    s = node.pm.compactor.stats
    await node.wal.stop()
    return {"records": records, "keys": keys, "value_bytes": value_bytes, "passes": passes,
            "input_mb": round(s.bytes_in / 1e6, 1), "output_mb": round(s.bytes_out / 1e6, 2),
            "input_mb_per_s": round(s.bytes_in / 1e6 / wall, 2), "records_per_s": int(records / wall),
            "seconds": round(wall, 2), "peak_map_entries": s.peak_map_entries,
            "peak_map_mb": round(s.peak_map_bytes / 1e6, 1)}


def zstd_batch(pairs: list[tuple[bytes, bytes]]) -> bytes:
    import struct

    import cramjam
    import crc32c

    from floe_broker.log.compaction import records as rec

    plain = keyed(pairs)
    head = rec.header(plain)
    payload = bytes(cramjam.zstd.compress(rec.records_section(plain, 0)))
    after_crc = struct.pack(">hiqqqhii", rec.ZSTD, head.last_offset_delta, head.base_timestamp, head.max_timestamp,
                            -1, -1, -1, head.records_count) + payload
    return struct.pack(">qiibI", 0, 9 + len(after_crc), -1, 2, crc32c.crc32c(after_crc)) + after_crc


async def _with_ticker(run: Any) -> tuple[float, float]:
    """Run ``run()``; its wall time and the longest gap a 1 ms ticker on the same loop saw meanwhile."""
    stall = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal stall
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall, last = max(stall, now - last), now

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await run()
    wall = time.perf_counter() - t0
    done.set()
    await tick
    return wall, stall


async def key_check(batches: int, per_batch: int, value_bytes: int) -> dict[str, object]:
    from floe_broker.log import compaction

    value = os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
    data = zstd_batch([(b"key-%08d" % i, value) for i in range(per_batch)])
    out: dict[str, object] = {"batches": batches, "records_per_batch": per_batch, "batch_bytes": len(data)}

    async def on_loop() -> None:
        for _ in range(batches):
            assert compaction.require_keys(data) is None
            await asyncio.sleep(0)

    async def off_loop() -> None:
        for _ in range(batches):
            assert await compaction.produce_error("compact", data) is None

    for name, run in (("on_loop", on_loop), ("off_loop", off_loop)):
        wall, stall = await _with_ticker(run)
        out[name] = {"seconds": round(wall, 3), "max_loop_stall_ms": round(stall * 1000, 1)}
    return out


def produce_p99(policy: str, records: int, keys: int, value_bytes: int, rate: float, seconds: float) -> dict:  # type: ignore[type-arg]
    work = Path(tempfile.mkdtemp(prefix="floe-bench-cmp-"))
    kafka, http = free_port(), free_port()
    env = {**os.environ, "FLOE_LOG_FORMAT": "json",
           "PYTHONPATH": os.pathsep.join(str(ROOT / r) for r in ("api", "broker", "cli"))}
    with open(work / "broker.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "floe_cli", "broker", "--storage", f"file://{work / 'store'}", "--cluster", "b",
             "--listen", f"127.0.0.1:{kafka}", "--http", f"127.0.0.1:{http}", "--compact-after-ms", "0",
             "--checkpoint-interval-ms", "500"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2).status == 200,
                   60, message="broker ready")
        bootstrap = f"127.0.0.1:{kafka}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("loaded", 1, 1, config={"cleanup.policy": policy,
                                                                       "min.cleanable.dirty.ratio": "0.01"}),
                                      NewTopic("probe", 1, 1)]).values():
            f.result(60)
        p = producer(bootstrap)
        value = b"v" * value_bytes
        for i in range(records):
            while True:
                try:
                    p.produce("loaded", key=b"key-%08d" % (i % keys), value=value)
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(300)
        lat = produce_at_rate(producer(bootstrap), "probe", b"x" * 1024, rate, seconds)
        passes = (work / "broker.log").read_text().count("key compaction pass")
        return {**latency_ms(lat), "compaction_passes_logged": passes}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--map-bytes", type=int, default=64 * 1024 * 1024)
    ap.add_argument("--rate", type=float, default=500.0, help="probe records per second during compaction")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--check-batches", type=int, default=50)
    ap.add_argument("--check-records", type=int, default=5000)
    args = ap.parse_args()
    out: dict[str, object] = {"machine": machine(), "note": "indicative: shared, loaded machine"}
    out["throughput"] = asyncio.run(throughput(args.records, args.keys, args.value_bytes, args.map_bytes))
    out["key_check"] = asyncio.run(key_check(args.check_batches, args.check_records, args.value_bytes))
    if not args.skip_latency:
        out["produce_during_compaction"] = produce_p99("compact", args.records, args.keys, args.value_bytes,
                                                       args.rate, args.seconds)
        out["produce_baseline_delete"] = produce_p99("delete", args.records, args.keys, args.value_bytes,
                                                     args.rate, args.seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
