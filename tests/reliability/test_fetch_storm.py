"""Memory under a fetch storm: 200 consumers reading old and new data from a broker with small limits.

The broker runs with a 4 MiB WAL buffer and 4 MiB memory and block caches;
four processes of 50 librdkafka consumers each fetch in small pieces, half
from the beginning (old data, through the block cache) and half at the end
(what the producer is writing now). The broker must not crash, its resident
memory must stay bounded (sampled from /proc; the peak is printed), the
producer must still be acknowledged during the storm, and nothing
acknowledged may be lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import StoreSpec
from tests.infra.broker import wait_until
from tests.reliability.test_write_limits import Ledger, assert_nothing_lost
from tests.test_clients import create_topic, produce_all

MIB = 1 << 20
LIMIT = 4 * MIB
PARTITIONS = 4
PROCESSES, PER_PROCESS = 4, 50  # 200 consumers
STORM_S = 40.0
OLD_DATA = [(None, p, None, b"o" * 4096, None, None) for p in range(PARTITIONS) for _ in range(1000)]  # 16 MiB
# What the broker may hold beyond its idle size: the caches and the WAL buffer, each bounded at
# 4 MiB, 200 connections' buffers and fetch responses in flight, and the allocator's slack.
RSS_GROWTH_BOUND = 300 * MIB
ROOT = Path(__file__).resolve().parents[2]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_two_hundred_consumers_keep_memory_bounded_and_lose_nothing(brokers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = StoreSpec(kind="file", url=f"file://{tmp_path / 'bucket'}")
    broker = brokers(store, "--max-pending-bytes", str(LIMIT), "--memory-cache-bytes", str(LIMIT),
                     "--block-cache-bytes", str(LIMIT))
    assert broker.proc is not None
    topic = f"storm-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    produce_all(broker.bootstrap, [(topic, *m[1:]) for m in OLD_DATA])  # asserts every record acknowledged
    idle = rss(broker.proc.pid)

    ledger = Ledger(broker.bootstrap, topic)
    wait_until(lambda: ledger.since(0) > 100, 60, message="acks before the storm")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    storm = [subprocess.Popen([sys.executable, "-m", "tests.reliability.fetch_storm_consumers", broker.bootstrap,
                               topic, str(PARTITIONS), str(PER_PROCESS), str(STORM_S)],
                              stdout=subprocess.PIPE, stderr=(tmp_path / f"storm-{i}.err").open("w"), text=True,
                              cwd=ROOT, env=env)
             for i in range(PROCESSES)]
    started = time.monotonic()
    peak = idle
    halves = [idle, idle]  # the peak in the storm's first and second half: growth that does not level off shows
    try:
        while any(p.poll() is None for p in storm):
            now = rss(broker.proc.pid)
            peak = max(peak, now)
            half = 0 if time.monotonic() - started < STORM_S / 2 else 1
            halves[half] = max(halves[half], now)
            assert broker.proc.poll() is None, "the broker exited during the storm"
            time.sleep(0.5)
            assert time.monotonic() - started < STORM_S + 180, "the storm's consumers did not finish"
        outcomes = [json.loads((p.communicate(timeout=30)[0].strip().splitlines() or ["{}"])[-1]) for p in storm]
    finally:
        for p in storm:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    acked_during = ledger.since(started)
    print(f"broker RSS idle {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (first half {halves[0] / MIB:.0f}, "
          f"second {halves[1] / MIB:.0f}) under {PROCESSES * PER_PROCESS} "
          f"consumers; read {[o.get('read') for o in outcomes]}; {acked_during} acks during the storm; "
          f"load {os.getloadavg()[0]:.1f}")
    assert all(o.get("read", 0) > 0 for o in outcomes), (
        outcomes, [(tmp_path / f"storm-{i}.err").read_text()[-500:] for i in range(PROCESSES)])
    assert acked_during > 100, "the producer was not acknowledged during the storm"
    assert peak - idle < RSS_GROWTH_BOUND, f"RSS grew {(peak - idle) / MIB:.0f} MiB under the storm"
    assert_nothing_lost(broker.bootstrap, topic, ledger.finish())
