"""Stopping a whole cluster at once: SIGTERM to every broker (as Kubernetes does when a cluster is
deleted) and Ctrl-C on ``floe local up``.

Every broker must exit 0 within seconds, every partition must end with a clean
checkpoint (nothing for a successor to recover from a WAL), and a broker
started afterwards must serve every acknowledged record.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

from floe_broker.storage.layout import CHECKPOINT_PREFIX
from tests.cli.conftest import floe_command, floe_env, read
from tests.infra.broker import wait_until
from tests.test_clients import consume_exactly, create_topic, produce_all
from tests.test_cluster import cluster_view, start_cluster

PARTITIONS = 60
# A drain is metadata only (milliseconds a partition); the bound leaves room for a loaded CI machine.
STOP_WITHIN_S = 20.0


def checkpoints(bucket: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    root = bucket / CHECKPOINT_PREFIX
    return {str(p.relative_to(root)): json.loads(p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_sigterm_to_every_broker_at_once_stops_in_seconds_with_clean_checkpoints(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, file_store)
    topic = f"stop-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, PARTITIONS)
    records = [(topic, p, None, f"r{p}".encode(), None, None) for p in range(PARTITIONS)]
    produce_all(procs[0].bootstrap, records)
    t0 = time.monotonic()
    for p in procs:
        assert p.proc is not None
        p.proc.send_signal(signal.SIGTERM)
    codes = [p.proc.wait(60) for p in procs if p.proc is not None]
    took = time.monotonic() - t0
    assert codes == [0] * len(procs), f"exit codes {codes}"
    assert took <= STOP_WITHIN_S, f"a whole-cluster stop took {took:.1f} s"
    for p in procs:
        assert "could not leave the cluster cleanly" not in p.log_text(), p.log_tail()
    bucket = Path(file_store.url.removeprefix("file://")) / "test"  # the cluster name is the prefix
    cks = checkpoints(bucket)
    unclean = sorted(k for k, body in cks.items() if not body.get("clean"))
    assert len(cks) >= PARTITIONS and not unclean, f"{len(unclean)} of {len(cks)} checkpoints not clean: {unclean[:5]}"
    # A broker started on the same bucket serves every record.
    after = brokers(file_store)
    wait_until(lambda: all(p["leader"] >= 0 for p in cluster_view(after)["partitions"] if p["topic"] == topic),
               60, message="partitions placed on the new broker")
    for part in range(PARTITIONS):
        got = consume_exactly(after.bootstrap, topic, part, 0, 1, timeout=30)
        assert [m.value() for m in got] == [f"r{part}".encode()]


LOCAL_PARTITIONS = 250


def test_ctrl_c_on_floe_local_up_stops_a_loaded_cluster_in_seconds(free_ranges, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C on a 3-broker ``floe local up``: every broker drains once, none is given partitions after it drained."""
    kafka, http = free_ranges(3)
    console = tmp_path / "console.txt"
    state = tmp_path / "state"
    with open(console, "wb") as out:
        up = subprocess.Popen(floe_command("local", "up", "--brokers", "3", "--dir", str(state),
                                           "--kafka-port", str(kafka), "--http-port", str(http)),
                              stdout=out, stderr=subprocess.STDOUT, env=floe_env())
    try:
        wait_until(lambda: "Ctrl-C drains and stops the brokers." in read(console), 90,
                   message="the cluster to come up")
        bootstrap = ",".join(f"127.0.0.1:{kafka + i}" for i in range(3))
        topic = "stop-local"
        create_topic(bootstrap, topic, LOCAL_PARTITIONS)
        produce_all(bootstrap, [(topic, p, None, f"r{p}".encode(), None, None) for p in range(LOCAL_PARTITIONS)])
        t0 = time.monotonic()
        up.send_signal(signal.SIGINT)
        code = up.wait(120)
        took = time.monotonic() - t0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    text = read(console)
    assert code == 0, text
    assert took <= STOP_WITHIN_S, f"Ctrl-C took {took:.1f} s to stop the cluster:\n{text}"
    logs = [(state / f"broker-{i}.log").read_text(errors="replace") for i in range(3)]
    for log in logs:
        assert "could not leave the cluster cleanly" not in log
        drained_at = log.rfind("drained")
        assert drained_at >= 0 and "partition opened" not in log[drained_at:], "a drained broker was given partitions"
    cks = checkpoints(state / "data" / "local")
    assert not [k for k, body in cks.items() if not body.get("clean")], "a checkpoint is not clean"


def test_a_broker_stopping_while_the_controller_is_paused_loses_nothing(brokers, file_store) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM to a broker whose controller is paused: it drains through (or as) the next controller and exits 0.

    The paused controller's session runs out with its lease; when it wakes it learns it
    was fenced and exits 3; a broker started afterwards serves every acknowledged record.
    """
    controller, member = start_cluster(brokers, file_store, 2)
    topic = f"stop-{uuid.uuid4().hex[:6]}"
    partitions = 8
    create_topic(member.bootstrap, topic, partitions)
    records = [(topic, p, None, f"r{p}-{i}".encode(), None, None) for p in range(partitions) for i in range(20)]
    produce_all(member.bootstrap, records)
    assert controller.proc is not None and member.proc is not None
    controller.proc.send_signal(signal.SIGSTOP)
    try:
        member.proc.send_signal(signal.SIGTERM)
        code = member.proc.wait(45)
    finally:
        controller.proc.send_signal(signal.SIGCONT)
    assert code == 0, member.log_tail()
    assert controller.proc.wait(30) == 3, "the paused controller exits as fenced once it wakes"
    after = brokers(file_store)
    wait_until(lambda: all(p["leader"] >= 0 for p in cluster_view(after)["partitions"] if p["topic"] == topic),
               60, message="partitions placed on the new broker")
    for part in range(partitions):
        got = consume_exactly(after.bootstrap, topic, part, 0, 20, timeout=30)
        assert [m.value() for m in got] == [f"r{part}-{i}".encode() for i in range(20)]
