"""Failover as a client sees it: kill -9 to the first acknowledged produce, per moved partition.

    .venv/bin/python benchmarks/failover.py --victim member
    .venv/bin/python benchmarks/failover.py --victim controller --runs 3
    .venv/bin/python benchmarks/failover.py --soak 180          # false failovers under load
    .venv/bin/python benchmarks/failover.py --victim controller --client java

Starts ``--brokers`` real broker processes on a ``file://`` bucket, creates a
topic of ``--partitions``, and keeps a librdkafka producer (acks=all, its
default retries) writing to every partition. Then kill -9s the victim: the
broker leading the most partitions that is not the controller (``member``), or
the one holding the controller lease (``controller``). For every partition the
victim led it reports the seconds from the kill to the first delivery report
that acknowledges a record on it, plus when ``/v1/cluster`` on a survivor stopped
naming the victim. ``--soak N`` instead runs the loaded cluster for N seconds
with nobody killed and counts the sessions the controller expired (false
failovers). ``--client java`` times the acknowledgements of Kafka's own Java
producer (``VerifiableProducer``, keyed records over every partition) instead
of librdkafka's. Nothing is asserted; ``tests/reliability/test_failover.py`` asserts (the
harness is ``tests/reliability/failover_harness.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path[:0] = [str(ROOT), str(ROOT / "broker")]

from tests.reliability.failover_harness import AckClock, measure, soak  # noqa: E402
from tests.reliability.java_ack_clock import JavaAckClock  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", choices=["member", "controller"], default="member")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--client", choices=["librdkafka", "java"], default="librdkafka",
                    help="whose producer's acknowledgements are timed")
    ap.add_argument("--soak", type=float, default=0, help="seconds of load with no kill; counts false failovers")
    ap.add_argument("--flag", action="append", default=[],
                    help="extra broker flag, e.g. --flag=--session-timeout-ms=6000")
    args = ap.parse_args()
    flags = [f for flag in args.flag for f in flag.split("=", 1)]
    for _ in range(max(1, args.runs)):
        with tempfile.TemporaryDirectory(prefix="floe-failover-") as tmp:
            if args.soak:
                out = soak(Path(tmp), seconds=args.soak, brokers=args.brokers, partitions=args.partitions,
                           flags=flags)
            else:
                clock = JavaAckClock if args.client == "java" else AckClock
                out = {"client": args.client,
                       **measure(Path(tmp), victim=args.victim, brokers=args.brokers, partitions=args.partitions,
                                 flags=flags, clock=clock).summary()}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
