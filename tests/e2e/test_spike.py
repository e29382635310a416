"""The compressed spike scenario (``e2e/spike.py --quick``), asserted on its JSON summary.

One run of about a minute: 2 brokers under ``floe local up --autoscale``, a 5x
traffic spike, scale-out, the balancer moving partitions onto the new
brokers, the drop, and scale-in by draining. The scenario polls for every
condition itself; this test only reads its verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_spike_scales_out_and_in_without_losing_acknowledged_records(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "e2e" / "spike.py"), "--quick", "--dir", str(tmp_path / "state"),
         "--csv", str(tmp_path / "spike.csv"), "--png", str(tmp_path / "spike.png")],
        capture_output=True, text=True, timeout=220, cwd=ROOT,
    )
    assert proc.returncode == 0, f"spike.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    context = f"{json.dumps(summary, indent=1)}\n{(tmp_path / 'state' / 'local-up.log').read_text()[-3000:]}"

    assert summary["brokers_min"] == 2, context
    assert summary["brokers_max"] > 2, context  # scaled out
    assert summary["brokers_final"] == 2, context  # and back in, by drains
    assert summary["drains"] >= 1 and summary["drain_exit_codes"] == [0], context
    assert summary["acked"] > 10_000, context
    assert summary["lost"] == 0, context
    assert summary["delivery_errors"] == 0, context
    assert summary["partitions_moved"] > 0 and summary["balancer_moves"] > 0, context
    assert summary["record_bytes_copied"] == 0, context
    assert summary["balanced_seconds"] is not None, context
    assert summary["consumer_caught_up"], context
    assert summary["local_up_exit"] == 0, context
    assert (tmp_path / "spike.csv").stat().st_size > 0 and (tmp_path / "spike.png").stat().st_size > 0
