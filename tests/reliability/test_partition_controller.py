"""A network partition: the controller cut off from the other brokers (and clients) but still reaching the bucket.

The broker holding the controller lease runs in its own network namespace;
taking its link down leaves it renewing the lease in the ``file://`` bucket
while nobody can reach it. It must not fail the brokers it cannot hear: they
are the majority, alive, and they note in the bucket that it does not answer
them. So it gives the lease up, a member takes it and fails the old
controller (fencing its WAL), the old controller learns from the bucket that
it was failed and exits 3, and clients are served by the majority again: no
acknowledged record lost, no offset with two values. When the link is back
its supervisor's restart rejoins it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.infra.broker import wait_until
from tests.reliability.client_view import first_acks_after, wait_every_partition_served
from tests.reliability.netns import Netns, placed_broker
from tests.test_clients import create_topic
from tests.test_cluster import Ledger, cluster_view, leaders


def test_a_controller_cut_off_from_the_brokers_gives_way_and_the_majority_serves(
        netns: Callable[[], Netns], tmp_path: Path) -> None:
    ns = netns()
    link = ns.link()
    bucket = f"file://{tmp_path / 'bucket'}"
    procs = [placed_broker(tmp_path, "broker-0", bucket, link.ns_ip, ns.name).start()]  # takes the lease
    try:
        procs += [placed_broker(tmp_path, f"broker-{i}", bucket, link.host_ip).start() for i in (1, 2)]
        wait_until(lambda: len(cluster_view(procs[1])["brokers"]) == 3, 30, message="3 brokers registered")
        assert cluster_view(procs[1])["controller"] == 1
        topic = f"cut-{uuid.uuid4().hex[:6]}"
        create_topic(procs[1].bootstrap, topic, 6)
        old = procs[0]
        with Ledger(",".join(p.bootstrap for p in procs), topic, 6) as ledger:
            wait_until(lambda: ledger.count() > 300, 60, message="acks before the cut")
            led = [p for p, n in leaders(procs[1], topic).items() if n == 1]
            assert led
            link.cut()
            t0 = time.monotonic()
            wait_until(lambda: cluster_view(procs[1])["controller"] not in (1, -1), 60, interval=0.2,
                       message="a member holding the lease")
            wait_until(lambda: 1 not in leaders(procs[1], topic).values(), 60, interval=0.2,
                       message="the old controller's partitions moved")
            moved = time.monotonic() - t0
            assert old.proc is not None
            code = wait_until(lambda: old.proc.poll() is not None and old.proc.returncode, 60, interval=0.2,
                              message=f"the old controller exiting\n{old.log_tail()}")
            assert code == 3, old.log_tail()
            assert "giving up the lease" in old.log_text()
            for member in procs[1:]:
                assert member.proc is not None and member.proc.poll() is None, member.log_tail()
            assert len(cluster_view(procs[1])["brokers"]) == 2
            wait_every_partition_served(ledger, time.monotonic(), 60)
            first = first_acks_after(ledger, led, t0)
            print(f"controller cut off: its partitions moved after {moved:.1f} s, it exited {code}; "
                  f"first ack on each moved partition {max(first.values()):.1f} s after the cut")

            link.heal()
            healed = time.monotonic()
            procs[0] = old.restarted().start(timeout=90)  # its supervisor's restart after exit 3
            wait_until(lambda: len(cluster_view(procs[1])["brokers"]) == 3, 30,
                       message="the restarted broker registered")
            wait_every_partition_served(ledger, healed, 60)
        ledger.verify(procs[0].bootstrap)
    finally:
        for p in procs:
            p.stop()
