"""A bad link, not a cut one: ``tc netem`` latency and loss on the veth of one broker.

One broker of three runs in its own network namespace; ``netem`` on its end
of the veth shapes what it sends (its heartbeats, its answers to clients).
In three phases on one cluster:

1. 200 ms ± 50 ms of added latency: heartbeats take longer but arrive, so
   the controller must fail nobody (a false failover) and produce is still
   acknowledged on every partition;
2. 30 % loss one way (what the broker sends): TCP retransmits; false
   failovers are counted and reported, produce is still acknowledged on
   every partition (by the broker or, if it was failed, by its successors);
3. 100 % loss one way: the broker is failed cleanly, its partitions move,
   it learns from the bucket that it was failed and exits 3.

Every acknowledged record is then read back at its offset. Skipped, with
the reason, where ``tc`` is missing or the kernel cannot load ``sch_netem``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.broker import wait_until
from tests.reliability.client_view import wait_every_partition_served
from tests.reliability.netns import Netns, PlacedBroker, netem, netem_clear, netem_unavailable, placed_broker
from tests.test_clients import create_topic
from tests.test_cluster import Ledger, cluster_view, leaders

PHASE_S = 20.0


def failovers(controller: PlacedBroker) -> int:
    """Brokers the controller has failed so far (its log says so once per failure)."""
    return controller.log_text().count('"failing a broker; fencing"')


def hold(seconds: float) -> None:
    """Let a fault last ``seconds``: a duration under test, never a synchronisation."""
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, seconds + 5, interval=0.5, message=f"{seconds:g} s of the fault")


def test_latency_and_loss_on_one_brokers_link(netns: Callable[[], Netns], tmp_path: Path) -> None:
    why = netem_unavailable()
    if why:
        pytest.skip(why)
    ns = netns()
    link = ns.link()
    bucket = f"file://{tmp_path / 'bucket'}"
    procs = [placed_broker(tmp_path, f"broker-{i}", bucket, link.host_ip).start() for i in (0, 1)]
    try:
        procs.append(placed_broker(tmp_path, "broker-2", bucket, link.ns_ip, ns.name).start())
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30, message="3 brokers registered")
        topic = f"netem-{uuid.uuid4().hex[:6]}"
        create_topic(procs[0].bootstrap, topic, 6)
        shaped = procs[2]
        with Ledger(",".join(p.bootstrap for p in procs), topic, 6) as ledger:
            wait_until(lambda: ledger.count() > 300, 60, message="acks before the fault")
            assert 3 in leaders(procs[0], topic).values()
            report: list[str] = []

            netem(link, on_host_side=False, spec="delay 200ms 50ms distribution normal")
            before, start = failovers(procs[0]), time.monotonic()
            hold(PHASE_S)
            false_failovers = failovers(procs[0]) - before
            wait_every_partition_served(ledger, start, 30)
            report.append(f"200±50 ms: {false_failovers} false failovers")
            assert false_failovers == 0, procs[0].log_tail()
            assert shaped.proc is not None and shaped.proc.poll() is None, shaped.log_tail()

            netem(link, on_host_side=False, spec="loss 30%")
            before, start = failovers(procs[0]), time.monotonic()
            hold(PHASE_S)
            lossy_failovers = failovers(procs[0]) - before
            wait_every_partition_served(ledger, start, 60)
            report.append(f"30 % loss one way: {lossy_failovers} false failovers")
            if lossy_failovers:  # it was failed: its supervisor restarts it on a clean link
                netem_clear(link, on_host_side=False)
                wait_until(lambda: shaped.proc is not None and shaped.proc.poll() is not None, 60,
                           message="the failed broker exiting")
                procs[2] = shaped = shaped.restarted().start(timeout=90)
                wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30, message="it rejoined")
                wait_until(lambda: shaped.get("/readyz")[0] == 200, 30, message="it is ready")

            netem(link, on_host_side=False, spec="loss 100%")
            start = time.monotonic()
            node = next(b["node_id"] for b in cluster_view(procs[0])["brokers"] if b["host"] == link.ns_ip)
            wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 2, 60, interval=0.2,
                       message="the broker behind a dead link failed")
            failed_after = time.monotonic() - start
            assert node not in leaders(procs[0], topic).values()
            code = wait_until(lambda: shaped.proc is not None and shaped.proc.poll() is not None
                              and shaped.proc.returncode, 60, interval=0.2,
                              message=f"the failed broker exiting\n{shaped.log_tail()}")
            assert code == 3, shaped.log_tail()
            wait_every_partition_served(ledger, time.monotonic(), 60)
            report.append(f"100 % loss one way: failed after {failed_after:.1f} s, exit {code}")
            print("netem: " + "; ".join(report))
        ledger.verify(procs[0].bootstrap)
    finally:
        for p in procs:
            p.stop()
