"""CPU time of one Fetch of many partitions through the real Dispatcher, in process (no sockets, no client).

    .venv/bin/python benchmarks/fetch_cpu.py --partitions 1000

An in-process broker (``tests.inprocess.harness``) with one topic of
``--partitions`` partitions, 4 records of 1 KB in each; then the same encoded
Fetch request (v12, no session, every partition) is dispatched over and over,
once from offset 0 (every partition answers records) and once from the end
(every partition is caught up), and the process CPU time per Fetch is printed.
This is the per-partition cost of a poll without the client's share or the
neighbours' noise in it: run it before and after a change, back to back.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), *(str(ROOT / root) for root in ("broker", "api", "cli"))]

from floe_broker.dispatch import Dispatcher  # noqa: E402
from tests.infra.batches import record_batch  # noqa: E402
from tests.inprocess.harness import started_broker  # noqa: E402
from tests.inprocess.test_core import FETCH, create_topic, produce  # noqa: E402
from tests.inprocess.wire import PEER, encode_request, request  # noqa: E402

RECORDS = 4


def fetch_frame(offsets: list[int]) -> bytes:
    return encode_request(FETCH, 12, request(
        FETCH, 12, replica_id=-1, max_wait=datetime.timedelta(0), min_bytes=1, max_bytes=64 << 20,
        isolation_level=0, session_id=0, session_epoch=-1, forgotten_topics_data=[],
        topics=[{"topic": "cpu", "partitions": [{"partition": i, "fetch_offset": o, "partition_max_bytes": 1 << 20,
                                                 "current_leader_epoch": -1, "log_start_offset": -1}
                                                for i, o in enumerate(offsets)]}]))


async def run(partitions: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with started_broker() as broker:
        d = Dispatcher(broker.serving)
        await create_topic(d, "cpu", partitions)
        batch = record_batch(b"v" * 1000, count=RECORDS)
        for i in range(partitions):
            await produce(d, "cpu", i, batch)
        for name, offset in (("with_data_ms", 0), ("caught_up_ms", RECORDS)):
            frame = fetch_frame([offset] * partitions)
            for _ in range(3):  # warm-up: schemas loaded, caches filled
                await d(frame, PEER)
            t0 = time.process_time()
            for _ in range(rounds):
                await d(frame, PEER)
            out[name] = round((time.process_time() - t0) / rounds * 1000, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    figures = asyncio.run(run(args.partitions, args.rounds))
    print({"partitions": args.partitions, **figures, "load_avg_1m": round(os.getloadavg()[0], 1)})


if __name__ == "__main__":
    main()
