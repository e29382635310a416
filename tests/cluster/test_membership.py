"""Membership: joining, being fenced, and the leaving rule (a drained broker is not fenced)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from floe_api.internal import CreateTopic, RegisterRequest
from floe_broker.cluster.client import RemoteController
from floe_broker.cluster.controller import Controller, Lease, now_ms
from floe_broker.cluster.membership import Membership
from floe_broker.cluster.metadata import ClusterState
from floe_broker.errors import StartupError, StoreUnavailable
from floe_broker.storage.health import StoreHealth
from floe_broker.storage.layout import LEASE_KEY

from .conftest import SESSION_TIMEOUT_MS, Cluster, Node


@dataclass
class Seen:
    fenced: int = 0
    metadata: list[int] = field(default_factory=list)
    collected: list[set[str]] = field(default_factory=list)


def membership(cluster: Cluster, controller: Controller, seen: Seen, **kw: float) -> Membership:
    session = controller.session
    seen_metadata = seen.metadata

    async def on_metadata(state: ClusterState) -> None:
        m.adopt(state)
        seen_metadata.append(state.version)

    async def collect(live: set[str]) -> None:
        seen.collected.append(live)

    def on_fenced() -> None:
        seen.fenced += 1

    m = Membership(
        controller, cluster.remote(session), cluster.store,
        registration=RegisterRequest(session=session, host=f"{session}.test", port=9092, http=controller.http),
        heartbeat_interval_ms=100, session_timeout_ms=SESSION_TIMEOUT_MS, wal_gc_interval_ms=0,
        on_fenced=on_fenced, on_metadata=on_metadata, collect_wal=collect, **kw,  # type: ignore[arg-type]
    )
    return m


async def test_a_member_joins_through_the_lease_holder_and_catches_up(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    await ctl.local.apply(CreateTopic(name="t", partitions=1))
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    node = await m.join()
    assert node == m.node_id and node in ctl.state().brokers
    assert seen.metadata == [ctl.state().version] and "t" in m.state().topics
    assert m.controller_node() == -1  # the controller itself never registered a broker here


async def test_a_member_the_controller_failed_is_fenced(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    await m.join()
    await m.member_round()
    assert seen.fenced == 0
    await ctl.controller.fail_broker(m.node_id)
    await m.member_round()
    assert seen.fenced == 1


async def test_a_leaving_member_whose_heartbeat_is_refused_is_not_fenced(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    await m.join()
    m.leaving = True
    await ctl.local.leave(m.node_id)
    await m.member_round()
    assert seen.fenced == 0


@pytest.mark.parametrize("leaving", [False, True])
async def test_a_controller_whose_own_session_is_gone_is_fenced_unless_leaving(
    cluster: Cluster, leaving: bool
) -> None:
    seen = Seen()
    m = membership(cluster, (await cluster.node("ctl")).controller, seen)
    node = await m.join()
    assert m.controller.active and m.controller_node() == node
    assert await m.controller_round()
    m.leaving = leaving
    await m.local.leave(node)
    assert not await m.controller_round()
    assert seen.fenced == (0 if leaving else 1)


async def test_the_controller_schedules_wal_collection_with_the_live_sessions(cluster: Cluster) -> None:
    seen = Seen()
    m = membership(cluster, (await cluster.node("ctl")).controller, seen)
    await m.join()
    await m.controller_round()
    assert seen.collected == [{"ctl"}]


async def test_a_member_takes_over_an_expired_lease(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    await m.join()
    await ctl.controller.release()  # expires the lease at once
    await m.member_round()
    assert m.controller.active and m.controller_node() == m.node_id
    assert seen.fenced == 0


async def test_joining_gives_up_when_no_controller_answers(cluster: Cluster) -> None:
    lease = Lease(holder="gone", http="127.0.0.1:9", epoch=1, expires_ms=now_ms() + 60_000)
    await cluster.store.put(LEASE_KEY, lease.to_bytes())
    m = membership(cluster, (await cluster.node("late")).controller, Seen(), join_timeout_s=0.3)
    with pytest.raises(StartupError, match="no controller answered"):
        await m.join()


@pytest.mark.parametrize("old_controller_answers", [False, True])
async def test_a_dead_controllers_session_expires_with_its_lease(
    cluster: Cluster, old_controller_answers: bool
) -> None:
    """Taking over from a controller that is gone fails its session at once, not a timeout later.

    The lease it last renewed is its last heartbeat. One that still answers its admin
    port (it only lost the lease) keeps a full session timeout to heartbeat as a member.
    """
    old = membership(cluster, (await cluster.node("ctl")).controller, Seen())
    old_node = await old.join()
    seen = Seen()
    member = membership(cluster, (await cluster.node("member")).controller, seen)
    await member.join()
    assert member.controller.peers is not None
    member.controller.peers.alive = old_controller_answers
    await old.controller.release()  # the lease as a dead holder leaves it: expired
    await member.member_round()
    assert member.controller.active
    state = member.state()
    if old_controller_answers:
        assert old_node in state.brokers, "a controller that still answers was failed at once"
    else:
        assert old_node not in state.brokers and state.fenced.get("ctl") == old_node
    assert seen.fenced == 0


async def test_a_member_cut_off_from_the_controller_learns_from_the_bucket_that_it_was_failed(
    cluster: Cluster,
) -> None:
    """Heartbeats cannot reach the controller, the bucket can: after a session the member reads it there."""
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    await m.join()
    await ctl.controller.fail_broker(m.node_id)
    await cluster.runners[0].cleanup()  # the controller's admin port stops answering; the lease stays
    assert await ctl.controller.renew()
    await m.member_round()
    assert seen.fenced == 0, "one missed answer is not a fence"
    m._answered_at -= SESSION_TIMEOUT_MS / 1000 + 1  # a session without an answer
    await m.member_round()
    assert seen.fenced == 1


async def test_a_member_whose_first_metadata_read_fails_serves_nothing_before_it_has_the_topics(
        cluster: Cluster) -> None:
    """A joining broker that could not read the metadata once must not start with an empty view.

    With one, its Metadata answers say every topic is unknown, and librdkafka then drops
    the topic ("partition count changed from N to 0") and fails queued messages with
    "Unknown topic": seen while brokers joined a loaded cluster during a traffic spike.
    """
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    await ctl.local.apply(CreateTopic(name="t", partitions=1))
    seen = Seen()
    m = membership(cluster, (await cluster.node("member")).controller, seen)
    real_load, failures = m.reader.load, [2]

    async def flaky_load():  # type: ignore[no-untyped-def]
        if failures[0]:
            failures[0] -= 1
            raise StoreUnavailable("slow down")
        return await real_load()

    m.reader.load = flaky_load  # type: ignore[method-assign]
    node = await m.join()
    assert failures == [0]
    assert "t" in m.state().topics and node in m.state().brokers


async def test_a_controller_that_loses_its_lease_still_knows_the_topics(cluster: Cluster) -> None:
    """The lease can lapse under a slow store (renewals time out): the broker stops acting as
    controller but must keep answering Metadata with the last state it committed, not the
    empty view of a broker that never needed one; else every topic looks deleted to clients."""
    seen = Seen()
    m = membership(cluster, (await cluster.node("solo")).controller, seen)
    await m.join()
    assert m.controller.active
    await m.local.apply(CreateTopic(name="t", partitions=3))
    version = m.state().version
    m.controller.active = False  # what a renewal that timed out near expiry does
    assert "t" in m.state().topics and m.state().version == version


class CuttableStore:
    """A member's path to the bucket that a test can cut: while cut every call fails, and its health says so."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.cut = False
        self.now = 0.0
        self.health = StoreHealth(clock=lambda: self.now)

    def __getattr__(self, name: str) -> object:
        call = getattr(self.inner, name)

        async def wrapped(*args: object, **kwargs: object) -> object:
            if self.cut:
                self.health.failed()
                raise StoreUnavailable(f"{name}: cut off from the bucket")
            result = await call(*args, **kwargs)
            self.health.succeeded()
            return result

        return wrapped


async def test_a_member_cut_off_from_the_bucket_is_failed_and_told_so_by_the_controller(
    cluster: Cluster,
) -> None:
    """It still heartbeats, so only its report of the store can get its partitions moved, and only the
    controller's answer can tell it, since it cannot read the bucket."""
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    seen = Seen()
    member = (await cluster.node("member")).controller
    store = CuttableStore(cluster.store)
    m = membership(cluster, member, seen)
    m.store = store  # type: ignore[assignment]
    m.remote = RemoteController(store, cluster.rpc, session=member.session)  # type: ignore[arg-type]
    await m.join()
    await m.member_round()
    store.cut = True
    await m.member_round()  # the first failure
    store.now += 2  # nothing has succeeded for two seconds: unavailable
    await m.member_round()
    await ctl.controller.check_liveness()
    assert m.node_id in ctl.state().brokers, "failed before its store was out for a session timeout"
    ctl.controller._store_lost_ms[m.node_id] -= SESSION_TIMEOUT_MS + 1  # a session timeout later
    await m.member_round()  # heartbeats still arrive
    await ctl.controller.check_liveness()
    assert m.node_id not in ctl.state().brokers
    assert seen.fenced == 0
    await m.member_round()
    assert seen.fenced == 1


async def _controller_cut_off_from(cluster: Cluster, noting: int) -> tuple[list[Membership], Node]:
    """A controller and two members; its admin port stops answering and ``noting`` members note it."""
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    members = []
    for name in ("m1", "m2"):
        m = membership(cluster, (await cluster.node(name)).controller, Seen())
        await m.join()
        members.append(m)
    await cluster.runners[0].cleanup()  # nobody reaches the controller; it still renews the lease
    for m in members[:noting]:
        m._answered_at -= SESSION_TIMEOUT_MS / 1000  # unanswered for a while
        await m.member_round()  # the heartbeat fails: the member notes it in the bucket
    for m in members:
        ctl.controller._last_seen[m.node_id] -= SESSION_TIMEOUT_MS + 1  # silent for a session, as ctl sees it
    return members, ctl


async def test_a_controller_most_members_cannot_reach_gives_the_lease_up(cluster: Cluster) -> None:
    members, ctl = await _controller_cut_off_from(cluster, noting=2)
    await ctl.controller.check_liveness()
    assert not ctl.controller.active
    assert all(m.node_id in ctl.state().brokers for m in members), "it failed the majority"
    assert not await ctl.controller.try_acquire(), "it took the lease straight back"
    assert await members[0].controller.try_acquire()


async def test_a_controller_fails_silent_members_when_only_a_minority_says_it_is_cut_off(cluster: Cluster) -> None:
    members, ctl = await _controller_cut_off_from(cluster, noting=1)
    await ctl.controller.check_liveness()
    assert ctl.controller.active
    assert not any(m.node_id in ctl.state().brokers for m in members)


async def test_a_joiner_that_takes_the_lease_and_loses_it_at_once_joins_the_winner(cluster: Cluster) -> None:
    """After a kill -9 two brokers may both see the lease free: the one that loses the race
    right after taking it finds its own register refused, and must join the winner instead
    of exiting (a replacement broker exited 1 this way in the soak)."""
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    m = membership(cluster, (await cluster.node("late")).controller, Seen())
    raced = [True]
    real_try = m.controller.try_acquire

    async def won_then_lost() -> bool:
        if raced[0]:
            raced[0] = False
            return True  # it saw the lease free and took it, and lost it before registering
        return await real_try()

    m.controller.try_acquire = won_then_lost  # type: ignore[method-assign]
    node = await m.join()
    assert not raced[0] and node in ctl.state().brokers and not m.controller.active
