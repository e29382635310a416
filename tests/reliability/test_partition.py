"""A network partition: one broker cut off from the controller (and its clients) but still reaching the bucket.

The broker runs in its own network namespace, joined to the others by a veth
pair; taking the link down cuts it off while the ``file://`` bucket stays
reachable. The controller must fail it and move its partitions; the cut-off
broker must learn from the bucket that it was failed and exit 3; and every
acknowledged record must be at its offset. The cut lasts 30 s; when it
heals, the broker's supervisor (here: the test) starts it again on the same
address, it joins as a new session, and every partition is served, through
it too. Skipped where network namespaces cannot be made (not root, no
iproute2).
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

PARTITION_S = 30.0


def test_a_broker_cut_off_from_the_controller_is_failed_and_rejoins_when_the_partition_heals(
        netns: Callable[[], Netns], tmp_path: Path) -> None:
    ns = netns()
    link = ns.link()
    bucket = f"file://{tmp_path / 'bucket'}"
    procs = [placed_broker(tmp_path, "broker-0", bucket, link.host_ip).start(),
             placed_broker(tmp_path, "broker-1", bucket, link.host_ip).start()]
    try:
        procs.append(placed_broker(tmp_path, "broker-2", bucket, link.ns_ip, ns.name).start())
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30, message="3 brokers registered")
        topic = f"cut-{uuid.uuid4().hex[:6]}"
        create_topic(procs[0].bootstrap, topic, 6)
        cut = procs[2]
        with Ledger(f"{procs[0].bootstrap},{procs[1].bootstrap}", topic, 6) as ledger:
            wait_until(lambda: ledger.count() > 300, 30, message="acks before the cut")
            led = [p for p, n in leaders(procs[0], topic).items() if n == 3]
            assert led
            link.cut()
            t0 = time.monotonic()
            wait_until(lambda: 3 not in leaders(procs[0], topic).values(), 20,
                       message="the cut-off broker's partitions moved")
            assert cut.proc is not None
            code = cut.proc.wait(30)
            print(f"cut-off broker failed after {time.monotonic() - t0:.1f} s; exit code {code}")
            assert code == 3, cut.log_tail()
            assert "seen in the bucket" in cut.log_text()
            wait_every_partition_served(ledger, time.monotonic(), 30)
            first = first_acks_after(ledger, led, t0)
            print(f"first ack on each moved partition {max(first.values()):.1f} s after the cut")

            wait_until(lambda: time.monotonic() - t0 >= PARTITION_S, PARTITION_S + 5, interval=0.5,
                       message="the partition lasting its 30 s")
            link.heal()
            healed = time.monotonic()
            procs[2] = cut.restarted().start(timeout=60)  # its supervisor's restart after exit 3
            wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30,
                       message="the restarted broker registered")
            assert wait_until(lambda: cluster_view(procs[2])["brokers"], 30, message="the rejoined broker's view")
            wait_every_partition_served(ledger, healed, 30)
        ledger.verify(procs[2].bootstrap)  # read back through the rejoined broker
    finally:
        for p in procs:
            p.stop()
