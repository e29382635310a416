"""The Java producer's retries across a partition move, a drain and a kill -9 of a leader.

A Java producer (idempotent, acks=all, its defaults) writes ``p:n`` with n
counting up per partition while the test moves partitions, drains a broker
(SIGTERM) or kills one with -9. Afterwards the Java consumer reads every
partition from the start: each must hold n = 0, 1, 2, ... with no duplicate
and no gap, and at least every record the producer was told was acked. The
newest client line only: these take the longest.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import BrokerFactory, StoreSpec
from tests.infra.broker import BrokerProcess, wait_until
from tests.java import tier
from tests.test_clients import create_topic

PARTITIONS = 6


def leaders(b: BrokerProcess, topic: str) -> dict[int, int]:
    return {p["partition"]: p["leader"] for p in b.get("/v1/cluster")[1]["partitions"] if p["topic"] == topic}


def move_all(b: BrokerProcess, topic: str) -> None:
    moves = [{"topic": topic, "partition": p, "to": (leader % 3) + 1} for p, leader in leaders(b, topic).items()]
    req = urllib.request.Request(f"http://{b.http}/v1/reassignments", data=json.dumps({"moves": moves}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        reply = json.load(resp)
    assert all(r["error"] is None for r in reply["results"]), reply


@pytest.mark.parametrize("fault", ["move", "drain", "kill9"])
def test_no_duplicate_and_no_loss(newest_java_tier: Path, brokers: BrokerFactory, file_store: StoreSpec,
                                  tmp_path: Path, fault: str) -> None:
    procs = [brokers(file_store) for _ in range(3)]
    wait_until(lambda: len(procs[0].get("/v1/cluster")[1].get("brokers", [])) == 3, 30, message="3 brokers")
    topic = f"jr-{fault}-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, PARTITIONS)
    bootstrap = ",".join(b.bootstrap for b in procs)
    progress, stop = tmp_path / "progress", tmp_path / "stop"

    def acked() -> int:
        return int(progress.read_text() or 0) if progress.exists() else 0

    producer = tier.start(newest_java_tier, "produce-steady", bootstrap, topic, str(PARTITIONS), str(progress),
                          str(stop), log=tmp_path / "producer.log")
    try:
        wait_until(lambda: acked() > 1000, 90, message="acks before the fault")
        victim = procs[2]  # node 3: never the controller, the first broker is
        if fault == "move":
            move_all(procs[0], topic)
        elif fault == "drain":
            assert victim.terminate(60) == 0, victim.log_tail()
        else:
            assert 3 in leaders(procs[0], topic).values()
            victim.kill9()
            wait_until(lambda: 3 not in leaders(procs[0], topic).values(), 30, message="partitions failed over")
        n = acked()
        wait_until(lambda: acked() > n + 1000, 120, message="acks after the fault")
    finally:
        stop.touch()
        out, _ = producer.communicate(timeout=180)
    sent = tier.verdict_of(out, (tmp_path / "producer.log").read_text())
    assert "fatal" not in sent and sent["errors"] == [], sent
    read = tier.run(newest_java_tier, "read-sequences", procs[0].bootstrap, topic, str(PARTITIONS))
    assert "fatal" not in read, read
    for p in read["partitions"]:
        acked_n = sent["acked_max_per_partition"][p["partition"]]
        assert p["duplicates"] == 0 and p["out_of_order"] == 0, f"{fault}: partition {p}"
        assert p["count"] == p["max"] + 1 >= acked_n, f"{fault}: lost acked records: {p}, acked up to {acked_n}"
    assert sum(p["count"] for p in read["partitions"]) >= sent["acked_total"]
