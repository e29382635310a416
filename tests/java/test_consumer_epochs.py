"""The Java consumer across a partition move: it validates its position with the new leader (KIP-320).

After a leader change the consumer sends OffsetForLeaderEpoch for the epoch
of the last record it consumed; an end offset below its position would be
truncation, and with ``auto.offset.reset=none`` a position it could not
validate would be an exception. Every record must arrive once, in order,
with no error and no reset. The newest client line only.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import wait_until
from tests.java import tier
from tests.java.test_admin import requests_served
from tests.offsets.test_leader_epochs import leader_and_epoch, move, produce
from tests.test_clients import create_topic
from tests.test_cluster import cluster_view, start_cluster


def test_the_java_consumer_follows_a_move_without_error_or_reset(newest_java_tier: Path, brokers: BrokerFactory,
                                                                  file_store: StoreSpec, tmp_path: Path) -> None:
    procs = start_cluster(brokers, file_store, 2)
    topic = f"jm-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic)
    produce(procs[0], topic, 20)
    progress, stop = tmp_path / "progress", tmp_path / "stop"

    def consumed() -> int:
        text = progress.read_text() if progress.exists() else ""
        return int(text) if text else 0

    follower = tier.start(newest_java_tier, "consumer-follow", procs[0].bootstrap, topic, str(progress), str(stop),
                          log=tmp_path / "consumer.log")
    try:
        wait_until(lambda: consumed() >= 20, 90, message="the records before the move")
        leader, epoch = leader_and_epoch(procs[0], topic)
        other = next(x["node_id"] for x in cluster_view(procs[0])["brokers"] if x["node_id"] != leader)
        assert move(procs, topic, other) == epoch + 1
        produce(procs[0], topic, 20)
        wait_until(lambda: consumed() >= 40, 90, message="the records after the move")
    finally:
        stop.touch()
        out, _ = follower.communicate(timeout=120)
    verdict = tier.verdict_of(out, (tmp_path / "consumer.log").read_text())
    assert "fatal" not in verdict, verdict
    assert (verdict["errors"], verdict["jumps"], verdict["consumed"], verdict["position"]) == ([], 0, 40, 40), verdict
    # It did validate: without the API the client skips the check, which would pass the test above alone.
    assert requests_served(procs, "offset_for_leader_epoch") >= 1
