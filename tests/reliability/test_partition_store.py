"""A broker cut off from the bucket but not from its clients or peers.

The bucket is a real S3 server (moto); one broker, in its own network
namespace, reaches it only through the S3 proxy of ``tests/infra`` listening
on the host's address of a veth link that nothing else uses, and reaches its
peers and clients over a second link; the other brokers talk to moto
directly. (The proxy reads each request whole before forwarding it, so a
request cut off mid-body never holds moto's one-request-at-a-time lock and
stalls the other brokers' store.) Taking the store
link down leaves that broker heartbeating and answering clients while every
object-store request fails. Nothing it acknowledges may be lost (it cannot
make anything durable, so it must not acknowledge); it says so on
``/readyz`` (503 ``store-unavailable``) and ``floe_objectstore_state``; and
because it still heartbeats, the controller must fail it for the store it
cannot reach, so its partitions move to brokers that can write. When the
link is back, its supervisor's restart (exit 3 is the fenced broker's exit)
brings it back as a new session and every partition is served.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import s3_spec
from tests.infra.broker import wait_until
from tests.infra.moto_server import MotoServer
from tests.infra.s3_fault_proxy import S3FaultProxy
from tests.reliability.client_view import acks_between, first_acks_after, wait_every_partition_served
from tests.reliability.netns import Link, Netns, PlacedBroker, placed_broker
from tests.test_clients import create_topic
from tests.test_cluster import Ledger, cluster_view, leaders

SESSION_TIMEOUT_S = 3.0  # the broker default


def readiness(b: PlacedBroker) -> tuple[int, dict[str, object]]:
    """``/readyz``'s status and body, also when it answers 503."""
    try:
        with urllib.request.urlopen(f"http://{b.http}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def store_state_metric(b: PlacedBroker) -> str:
    """The state ``floe_objectstore_state`` marks with 1."""
    for line in b.metrics_text().splitlines():
        if line.startswith("floe_objectstore_state{") and line.rstrip().endswith(" 1.0"):
            return line.split('state="', 1)[1].split('"', 1)[0]
    return "none"


@pytest.fixture
def store_link(netns: Callable[[], Netns]) -> tuple[Netns, Link, Link]:
    """A namespace with one link for peers and clients and another, cuttable, for the bucket."""
    ns = netns()
    return ns, ns.link(), ns.link()


@pytest.fixture
def proxy_on_link(store_link: tuple[Netns, Link, Link], moto_s3: MotoServer) -> Iterator[S3FaultProxy]:
    """The namespace's only way to the bucket: a pass-through proxy on the store link's host address."""
    with S3FaultProxy(moto_s3.endpoint, host=store_link[2].host_ip) as proxy:
        yield proxy


def test_a_broker_cut_off_from_the_bucket_stops_acknowledging_and_its_partitions_move(
        store_link: tuple[Netns, Link, Link], moto_s3: MotoServer, proxy_on_link: S3FaultProxy,
        tmp_path: Path) -> None:
    ns, net, store = store_link
    prefix = f"cut-{uuid.uuid4().hex[:6]}"
    direct, via_link = s3_spec(moto_s3, prefix), s3_spec(moto_s3, prefix, endpoint=proxy_on_link.endpoint)

    def broker(name: str, host: str, netns_name: str | None = None) -> PlacedBroker:
        spec = via_link if netns_name else direct
        return placed_broker(tmp_path, name, spec.url, host, netns_name, env=spec.env, extra=spec.flags)

    procs = [broker("broker-0", net.host_ip).start(), broker("broker-1", net.host_ip).start()]
    try:
        procs.append(broker("broker-2", net.ns_ip, ns.name).start())
        wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30, message="3 brokers registered")
        topic = f"cut-{uuid.uuid4().hex[:6]}"
        create_topic(procs[0].bootstrap, topic, 6)
        cut = procs[2]
        led = [p for p, node in leaders(procs[0], topic).items() if node == 3]
        assert led, leaders(procs[0], topic)
        with Ledger(",".join(p.bootstrap for p in procs), topic, 6) as ledger:
            wait_until(lambda: ledger.count() > 300, 60, message="acks before the cut")
            store.cut()
            t0 = time.monotonic()
            # The broker still answers its clients and peers, and says why it cannot serve.
            status, body = wait_until(lambda: (r := readiness(cut))[0] == 503 and r, 20, interval=0.1,
                                      message="/readyz saying the store is unavailable")
            assert body.get("status") == "store-unavailable", body
            assert wait_until(lambda: store_state_metric(cut) == "unavailable", 20, interval=0.1,
                              message="floe_objectstore_state unavailable")
            reported = time.monotonic() - t0

            still_led = t0  # the last time the controller's metadata still named the cut-off broker leader

            def moved_away() -> bool:
                nonlocal still_led
                now = time.monotonic()
                if set(led) & {p for p, n in leaders(procs[0], topic).items() if n == 3}:
                    still_led = now
                    return False
                return True

            wait_until(moved_away, 30, interval=0.1, message="the cut-off broker's partitions moved")
            moved = time.monotonic() - t0
            # While it still led them nobody else could acknowledge them, and it could make nothing
            # durable: past its session timeout (slack for in-flight answers) there must be no ack.
            late = acks_between(ledger, led, t0 + SESSION_TIMEOUT_S, still_led)
            assert not late, f"{len(late)} acknowledgements from a leader cut off from the bucket"
            assert cut.proc is not None
            code = wait_until(lambda: cut.proc.poll() is not None and cut.proc.returncode, 60, interval=0.2,
                              message=f"the fenced broker exiting\n{cut.log_tail()}")
            assert code == 3, cut.log_tail()
            wait_every_partition_served(ledger, time.monotonic(), 60)
            first = first_acks_after(ledger, led, t0)
            print(f"store cut: reported after {reported:.1f} s, partitions moved after {moved:.1f} s, broker "
                  f"exited {code}; first ack on each moved partition {max(first.values()):.1f} s after the cut")

            store.heal()
            healed = time.monotonic()
            procs[2] = cut.restarted().start(timeout=90)  # its supervisor's restart after exit 3
            wait_until(lambda: readiness(procs[2])[1].get("store") == "ok", 30, message="the store ok again")
            wait_until(lambda: len(cluster_view(procs[0])["brokers"]) == 3, 30,
                       message="the restarted broker registered")
            wait_every_partition_served(ledger, healed, 60)
        ledger.verify(procs[2].bootstrap)
    finally:
        for p in procs:
            p.stop()
