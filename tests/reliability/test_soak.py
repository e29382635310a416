"""The soak's CI version: five minutes of load with a rebalance every 30 s and a fault every 40-60 s.

``make soak`` runs the 30-minute version and then the history checker ten
times; this is the same runner (``tests/reliability/soak.py``) scaled down so
it fits the suite. ``SOAK_SEED`` replays a schedule; a failing run keeps its
seed, schedule and broker logs in the directory the assertion names.
"""

from __future__ import annotations

import os

import pytest

from tests.reliability.soak import run_soak

MINUTES = 5


@pytest.mark.slow
@pytest.mark.timeout(MINUTES * 60 + 600)
def test_five_minutes_of_load_rebalances_and_random_faults_lose_nothing_and_leak_nothing() -> None:
    seed = int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else None
    verdict = run_soak(MINUTES, seed)
    assert verdict.ok, (f"soak seed {verdict.seed} failed (replay with SOAK_SEED={verdict.seed}; logs in "
                        f"{verdict.run_dir}): {verdict.violations}")
    assert verdict.counts["acknowledged"] > 0 and verdict.counts["txn_committed"] > 0
