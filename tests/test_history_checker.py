"""A history checker in the spirit of Jepsen, against a 3-broker cluster.

Producers with acks=all write unique values while the test reassigns
partitions, drains a broker, kill -9s a leader, SIGSTOPs a leader past the
session timeout and resumes it, and kills the controller (restarting
replacements as it goes). Afterwards every partition is read back and
checked: every acknowledged value is present at the offset it was
acknowledged at, no offset holds two different values, and offsets are
never reused. Beside them a transactional writer commits and aborts
transactions through the same faults (``tests/txn/ledger.py``): read_committed
must show no aborted value, lose no committed one, never part of a
transaction, and nothing twice. Runs on the file:// store and on Ceph radosgw.
"""

from __future__ import annotations

import signal
import time
import uuid

from tests.infra.broker import wait_until
from tests.test_clients import create_topic
from tests.test_cluster import Ledger, cluster_view, leaders, post, start_cluster
from tests.txn.ledger import TxnLedger

PARTITIONS = 6


def test_history_under_moves_drains_crashes_pauses_and_controller_loss(brokers, cluster_store) -> None:  # type: ignore[no-untyped-def]
    procs = start_cluster(brokers, cluster_store, 3)
    topic = f"jepsen-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, topic, PARTITIONS)
    bootstrap = ",".join(p.bootstrap for p in procs)
    events: list[str] = []

    def live() -> list:  # type: ignore[type-arg]
        return [p for p in procs if p.proc is not None and p.proc.poll() is None]

    def some_live():  # type: ignore[no-untyped-def]
        return live()[0]

    def progress(ledger: Ledger, what: str, n: int = 200) -> None:
        start = ledger.count()
        wait_until(lambda: ledger.count() >= start + n, 60, message=f"acks after {what}")

    def by_node(node: int):  # type: ignore[no-untyped-def]
        view = cluster_view(some_live())
        http = next(b["http"] for b in view["brokers"] if b["node_id"] == node)
        return next(p for p in live() if p.http == http)

    txn_topic = f"jepsen-txn-{uuid.uuid4().hex[:6]}"
    create_topic(procs[0].bootstrap, txn_topic, 3)
    with Ledger(bootstrap, topic, PARTITIONS) as ledger, TxnLedger(bootstrap, txn_topic, 3) as txns:
        progress(ledger, "start")

        # 1. reassign every partition one step around the ring
        view = cluster_view(some_live())
        nodes = sorted(b["node_id"] for b in view["brokers"])
        cur = leaders(some_live(), topic)
        moves = [{"topic": topic, "partition": p, "to": nodes[(nodes.index(cur[p]) + 1) % len(nodes)]}
                 for p in range(PARTITIONS)]
        reply = post(some_live().http, "/v1/reassignments", {"moves": moves})
        assert all(r["error"] is None for r in reply["results"]), reply
        events.append(f"reassigned {len(moves)} partitions in {reply['seconds'] * 1000:.0f} ms")
        progress(ledger, "reassignment")

        # 2. drain a non-controller broker (SIGTERM), start a replacement
        controller = cluster_view(some_live())["controller"]
        victim = next(p for p in live() if by_node(controller) is not p)
        assert victim.terminate(90) == 0, victim.log_tail()
        events.append("drained one broker")
        procs.append(brokers(cluster_store))
        progress(ledger, "drain")

        # 3. kill -9 a leader that is not the controller
        controller = cluster_view(some_live())["controller"]
        cur = leaders(some_live(), topic)
        target_node = next(n for n in cur.values() if n != controller)
        target = by_node(target_node)
        target.kill9()
        wait_until(lambda: target_node not in leaders(some_live(), topic).values(), 30,
                   message="failover after kill -9")
        events.append(f"killed leader node {target_node}")
        procs.append(brokers(cluster_store))
        progress(ledger, "kill -9")

        # 4. SIGSTOP a leader past the session timeout, then resume it: it must exit
        controller = cluster_view(some_live())["controller"]
        cur = leaders(some_live(), topic)
        paused_node = next(n for n in cur.values() if n != controller)
        paused = by_node(paused_node)
        assert paused.proc is not None
        paused.proc.send_signal(signal.SIGSTOP)
        others = [p for p in live() if p is not paused]
        wait_until(lambda: paused_node not in leaders(others[0], topic).values(), 30,
                   message="partitions taken from the paused broker")
        paused.proc.send_signal(signal.SIGCONT)
        assert paused.proc.wait(30) == 3, "a fenced broker must exit (3) when it resumes"
        events.append(f"paused and fenced node {paused_node}")
        procs.append(brokers(cluster_store))
        progress(ledger, "pause")

        # 5. kill -9 the controller
        controller = cluster_view(some_live())["controller"]
        ctl = by_node(controller)
        ctl.kill9()
        wait_until(lambda: cluster_view(some_live())["controller"] not in (controller, -1), 30,
                   message="a new controller")
        wait_until(lambda: controller not in leaders(some_live(), topic).values(), 30,
                   message="the old controller's partitions moved")
        events.append(f"killed controller node {controller}")
        progress(ledger, "controller loss")
        commits = txns.count()
        wait_until(lambda: txns.count() > commits + 3, 120, message="transactions after the faults")
        time.sleep(0.5)

    ledger.verify(some_live().bootstrap)
    txns.verify(",".join(p.bootstrap for p in live()))
    per_part: dict[int, list[int]] = {}
    for part, off in ledger.acked:
        per_part.setdefault(part, []).append(off)
    print(f"history: {len(ledger.acked)} acknowledged writes, {len(events)} faults: " + "; ".join(events))
