"""Broker CPU seconds per GB on the produce and consume paths, optionally with a py-spy profile.

    .venv/bin/python benchmarks/hot_paths.py --partitions 8 --mb 300
    .venv/bin/python benchmarks/hot_paths.py --partitions 1000 --mb 300 --profile /tmp/prof

MB/s on a shared machine says more about the neighbours than about the
broker; the CPU time the broker process itself spends per byte (user + system
from /proc) does not depend on how long it waited for a core. So this runs
one broker (``file://`` store), produces ``--mb`` of records with
confluent-kafka as fast as it accepts them, consumes them back, and prints for
each phase the broker's CPU seconds per GB, MB/s and the load average. With
``--profile DIR`` it records each phase with py-spy (``DIR/produce.txt``,
``DIR/consume.txt``, collapsed stacks) to find where that CPU goes. Nothing
is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "broker")]

from benchmarks.common import consume_all, create_topic, machine, proc_sample, produce_saturated, producer  # noqa: E402

from tests.infra.broker import BrokerProcess  # noqa: E402


class Profile:
    """py-spy recording one broker phase into collapsed stacks (or nothing without a directory)."""

    def __init__(self, directory: Path | None, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, phase: str) -> None:
        if self.directory is None:
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = self.directory / f"{phase}.txt"
        self.proc = subprocess.Popen([py_spy, "record", "--format", "raw", "--rate", "50", "--nonblocking",
                                      "-o", str(out), "--pid", str(self.pid)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            self.proc.wait(60)
            self.proc = None


def _api_sample(text: str, api: str, suffix: str) -> float:
    m = re.search(rf'^floe_request_seconds_{suffix}{{api="{api}"}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def phase_figures(cpu_s: float, nbytes: int, seconds: float, api: str, before: str, after: str) -> dict[str, float]:
    """The phase's figures; requests and their mean time in the broker tell CPU-bound from latency-bound."""
    gb = nbytes / 1e9
    requests = _api_sample(after, api, "count") - _api_sample(before, api, "count")
    in_broker = _api_sample(after, api, "sum") - _api_sample(before, api, "sum")
    return {"cpu_s_per_gb": round(cpu_s / gb, 2) if gb else float("nan"),
            "mb_per_s": round(nbytes / 1e6 / seconds, 1) if seconds else float("nan"),
            f"{api}_requests": int(requests),
            f"{api}_mean_ms": round(in_broker / requests * 1000, 2) if requests else float("nan"),
            "load_avg_1m": round(os.getloadavg()[0], 1)}


def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="floe-hot-"))
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    broker = BrokerProcess(storage=f"file://{tmp / 'bucket'}", cluster="hot", log_path=tmp / "broker.log", env={},
                           extra=["--flush-interval-ms", str(args.flush_ms), "--fsync", "false"])
    broker.start()
    try:
        assert broker.proc is not None
        pid = broker.proc.pid
        prof = Profile(profile_dir, pid)
        create_topic(broker.bootstrap, "hot", args.partitions, 1, timeout=60)
        value = os.urandom(args.record_size)
        count = int(args.mb * 1024 * 1024) // args.record_size
        p = producer(broker.bootstrap)

        m0, c0 = broker.metrics_text(), proc_sample(pid).cpu_seconds
        prof.start("produce")
        latencies, produce_s = produce_saturated(p, "hot", value, count, progress=False)
        prof.stop()
        m1, c1 = broker.metrics_text(), proc_sample(pid).cpu_seconds
        produced = len(latencies) * args.record_size
        out: dict[str, object] = {"partitions": args.partitions, "mb": args.mb,
                                  "produce": phase_figures(c1 - c0, produced, produce_s, "produce", m0, m1)}

        prof.start("consume")
        del p  # its connections close before the consume phase starts
        m2, c2 = broker.metrics_text(), proc_sample(pid).cpu_seconds
        _, nbytes, consume_s = consume_all(broker.bootstrap, "hot", args.partitions, len(latencies))
        m3, c3 = broker.metrics_text(), proc_sample(pid).cpu_seconds
        prof.stop()
        out["consume"] = phase_figures(c3 - c2, nbytes, consume_s, "fetch", m2, m3)
        out["machine"] = machine()
        return out
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--mb", type=float, default=300)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--flush-ms", type=int, default=10)
    ap.add_argument("--profile", help="directory for py-spy's collapsed stacks of each phase")
    args = ap.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
