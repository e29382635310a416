"""ControllerClient: the in-process and the HTTP controller answer alike, and failures are typed."""

from __future__ import annotations

import pytest

from floe_api.internal import AlterConfigs, ConfigChange, CreateTopic, HeartbeatRequest, RegisterRequest
from floe_api.public import MoveResult
from floe_broker.cluster.client import RoutedController
from floe_broker.errors import NotController, RpcError

from .conftest import Cluster


def registration(session: str) -> RegisterRequest:
    """Each session on its own endpoint (a second session on one endpoint fails the first)."""
    return RegisterRequest(session=session, host=f"{session}.test", port=9092, http=f"{session}.test:1")


async def test_local_and_http_calls_give_the_same_typed_results(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    remote = cluster.remote("member")

    # register: each path hands out the next node id, and a repeated session keeps its id
    assert await ctl.local.register(registration("a")) == 1
    assert await remote.register(registration("b")) == 2
    assert await remote.register(registration("a")) == 1

    # metadata changes: the same typed op through either path lands in the same state
    await ctl.local.apply(CreateTopic(name="local", partitions=2))
    await remote.apply(CreateTopic(name="remote", partitions=2, configs={"retention.ms": "5"}))
    await remote.apply(AlterConfigs(name="local", changes=[ConfigChange(key="retention.ms", kind=0, value="7")]))
    state = ctl.state()
    assert {t: len(i.partitions) for t, i in state.topics.items()} == {"local": 2, "remote": 2}
    assert state.topics["local"].configs == {"retention.ms": "7"}

    # producer id blocks never overlap
    first = await ctl.local.producer_ids(10)
    second = await remote.producer_ids(10)
    assert second == first + 10

    # heartbeats: same reply model, same verdicts
    local_hb = await ctl.local.heartbeat(HeartbeatRequest(node=2, session="b"))
    remote_hb = await remote.heartbeat(HeartbeatRequest(node=2, session="b"))
    assert local_hb == remote_hb and local_hb.ok and local_hb.version == ctl.state().version
    assert not (await remote.heartbeat(HeartbeatRequest(node=2, session="stale"))).ok

    # moves: the public MoveResult model from both
    leader = state.topics["local"].partitions[0].leader
    other = 3 - leader
    local_moves = await ctl.local.reassign([("local", 0, other), ("nope", 0, 1)])
    remote_moves = await remote.reassign([("local", 0, leader)])
    assert all(isinstance(r, MoveResult) for r in [*local_moves, *remote_moves])
    assert local_moves[0].error is None and local_moves[0].from_node == leader
    assert local_moves[1].error == "UNKNOWN_TOPIC_OR_PARTITION"
    assert remote_moves[0].error is None and remote_moves[0].from_node == other
    assert ctl.state().topics["local"].partitions[0].leader == leader

    await remote.leave(2)
    assert 2 not in ctl.state().brokers


async def test_a_broker_that_is_not_the_controller_answers_503_and_the_caller_gets_not_controller(
    cluster: Cluster,
) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    ctl.controller.active = False  # still named by the lease, but no longer acting as controller
    with pytest.raises(NotController):
        await cluster.remote("member").apply(CreateTopic(name="t", partitions=1))
    with pytest.raises(NotController):
        await ctl.local.producer_ids(1)


async def test_no_lease_or_our_own_lease_is_not_controller(cluster: Cluster) -> None:
    with pytest.raises(NotController):
        await cluster.remote("member").producer_ids(1)
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    with pytest.raises(NotController):  # never POST to ourselves
        await cluster.remote("ctl").producer_ids(1)


async def test_a_draining_controller_refuses_moves_with_a_retryable_error(cluster: Cluster) -> None:
    ctl = await cluster.node("ctl")
    assert await ctl.controller.try_acquire()
    await ctl.local.register(registration("a"))
    await ctl.local.apply(CreateTopic(name="t", partitions=1))
    ctl.draining = True
    with pytest.raises(RpcError, match="draining") as local_err:
        await ctl.local.reassign([("t", 0, 1)])
    with pytest.raises(RpcError, match="draining") as remote_err:
        await cluster.remote("member").reassign([("t", 0, 1)])
    assert not isinstance(local_err.value, NotController) and not isinstance(remote_err.value, NotController)


async def test_routed_calls_follow_the_lease(cluster: Cluster) -> None:
    first = await cluster.node("first")
    second = await cluster.node("second")
    assert await first.controller.try_acquire()
    routed = RoutedController(second.local, cluster.remote("second"))
    await routed.apply(CreateTopic(name="via-http", partitions=1))  # second is not the controller
    assert "via-http" in first.state().topics

    # the lease moves to second: its calls now run in-process
    await first.controller.release()
    assert await second.controller.try_acquire()
    await routed.apply(CreateTopic(name="in-process", partitions=1))
    assert {"via-http", "in-process"} <= set(second.state().topics)
    with pytest.raises(NotController):  # and first, no longer active, reaches nobody
        await first.local.apply(CreateTopic(name="x", partitions=1))
