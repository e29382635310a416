"""The group state machine on its own: every transition and error code, with a fake clock."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from floe_broker.groups.state import Group, GroupState, JoinReply, Limits, SyncReply, Waiting, decode_subscription

RANGE = [("range", b"r-meta"), ("roundrobin", b"rr-meta")]


def join(g: Group, now: float, member_id: str = "", **kw: Any) -> JoinReply | Waiting:
    args: dict[str, Any] = dict(member_id=member_id, instance_id=None, client_id="c", client_host="/h",
                                session_timeout_ms=10_000, rebalance_timeout_ms=30_000, protocol_type="consumer",
                                protocols=RANGE, require_known_member=True)
    args.update(kw)
    return g.join(now, **args)


def new_member(g: Group, now: float, **kw: Any) -> str:
    """KIP-394 round trip: the first join hands out an id, the second one joins with it."""
    first = join(g, now, **kw)
    assert isinstance(first, JoinReply) and first.error == ErrorCode.member_id_required
    second = join(g, now, first.member_id, **kw)
    assert isinstance(second, Waiting)
    return first.member_id


def replies(g: Group) -> dict[tuple[str, str], Any]:
    out, _ = g.take_effects()
    return {(m, "join" if isinstance(r, JoinReply) else "sync"): r for m, r in out}


def stable_group(n: int = 2) -> tuple[Group, list[str]]:
    g = Group("g", limits=Limits(initial_rebalance_delay_ms=500))
    ids = [new_member(g, 0.0) for _ in range(n)]
    g.tick(1.0)  # the initial delay is over: one join round with everyone
    out = replies(g)
    assert g.state is GroupState.COMPLETING and g.generation == 1
    leader = g.leader
    assert leader in ids
    assert len(out[(leader, "join")].members) == n
    for m in ids:
        if m != leader:
            assert out[(m, "join")].members == ()
            assert isinstance(g.sync(1.0, member_id=m, instance_id=None, generation=g.generation,
                                     protocol_type=None, protocol_name=None, assignments={}), Waiting)
    assert isinstance(g.sync(1.0, member_id=leader, instance_id=None, generation=g.generation, protocol_type=None,
                             protocol_name=None, assignments={m: m.encode() for m in ids}), Waiting)
    out, persist = g.take_effects()
    assert persist, "a completed sync must be persisted before it is answered"
    assert out == [] and g.state is GroupState.COMPLETING, "nothing is handed out before it is durable"
    assert g.snapshot()["members"][0]["assignment"], "the write carries the leader's assignment"
    g.assignment_durable(g.pending_assignment)
    out, _ = g.take_effects()
    assert [m for m, _ in out][0] == leader, "the leader is answered first"
    assert {m: r.assignment for m, r in out} == {m: m.encode() for m in ids}
    assert g.state is GroupState.STABLE
    return g, ids


def test_first_member_gets_an_id_then_leads_a_group_of_one() -> None:
    g = Group("g")
    m = new_member(g, 0.0)
    out = replies(g)
    reply = out[(m, "join")]
    assert reply.error == ErrorCode.none and reply.generation == 1 and reply.leader == m
    assert reply.protocol_name == "range" and [x[0] for x in reply.members] == [m]


def test_three_members_rebalance_and_every_member_gets_its_assignment() -> None:
    g, ids = stable_group(3)
    assert g.generation == 1 and len(g.members) == 3


def test_initial_rebalance_delay_collects_members_that_arrive_together() -> None:
    g = Group("g", limits=Limits(initial_rebalance_delay_ms=1000))
    a = new_member(g, 0.0)
    b = new_member(g, 0.5)
    assert replies(g) == {}, "the join must wait for the delay"
    g.tick(1.2)
    assert replies(g) == {}, "a newcomer extends the delay"
    g.tick(1.6)
    out = replies(g)
    assert {k[0] for k in out} == {a, b} and g.generation == 1


def test_heartbeat_errors_tell_members_what_to_do() -> None:
    g, (a, b) = stable_group(2)
    gen = g.generation
    hb = g.heartbeat
    assert hb(2.0, member_id=a, instance_id=None, generation=gen) == ErrorCode.none
    assert hb(2.0, member_id="nobody", instance_id=None, generation=gen) == ErrorCode.unknown_member_id
    assert hb(2.0, member_id=a, instance_id=None, generation=gen - 1) == ErrorCode.illegal_generation
    new_member(g, 2.0)  # a newcomer starts a rebalance
    assert hb(2.1, member_id=a, instance_id=None, generation=gen) == ErrorCode.rebalance_in_progress


def test_silent_member_expires_and_the_rest_rebalance() -> None:
    g, (a, b) = stable_group(2)
    gen = g.generation
    g.heartbeat(9.0, member_id=a, instance_id=None, generation=gen)
    g.tick(12.0)  # b last seen at 1.0, session 10 s
    assert b not in g.members and g.state is GroupState.PREPARING
    assert g.heartbeat(12.0, member_id=a, instance_id=None, generation=gen) == ErrorCode.rebalance_in_progress
    join(g, 12.1, a)
    out = replies(g)
    assert out[(a, "join")].generation == gen + 1 and g.state is GroupState.COMPLETING


def test_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() -> None:
    g, (a, b) = stable_group(2)
    c = new_member(g, 5.0)
    join(g, 5.0, a)
    assert replies(g) == {}
    g.heartbeat(20.0, member_id=b, instance_id=None, generation=g.generation)  # alive, but never rejoins
    g.tick(36.0)  # rebalance timeout is 30 s
    out = replies(g)
    assert b not in g.members and {k[0] for k in out} == {a, c}


def test_sync_with_wrong_generation_or_during_rebalance() -> None:
    g, (a, b) = stable_group(2)
    gen = g.generation
    bad = g.sync(2.0, member_id=a, instance_id=None, generation=gen + 5, protocol_type=None, protocol_name=None,
                 assignments={})
    assert isinstance(bad, SyncReply) and bad.error == ErrorCode.illegal_generation
    again = g.sync(2.0, member_id=a, instance_id=None, generation=gen, protocol_type=None, protocol_name=None,
                   assignments={})
    assert isinstance(again, SyncReply) and again.assignment == a.encode(), "stable: the current assignment"
    wrong = g.sync(2.0, member_id=a, instance_id=None, generation=gen, protocol_type="consumer",
                   protocol_name="roundrobin", assignments={})
    assert isinstance(wrong, SyncReply) and wrong.error == ErrorCode.inconsistent_group_protocol
    new_member(g, 3.0)
    during = g.sync(3.0, member_id=a, instance_id=None, generation=gen, protocol_type=None, protocol_name=None,
                    assignments={})
    assert isinstance(during, SyncReply) and during.error == ErrorCode.rebalance_in_progress


def test_leave_rebalances_and_unknown_members_get_an_error() -> None:
    g, (a, b) = stable_group(2)
    assert g.leave(2.0, member_id="ghost", instance_id=None) == ErrorCode.unknown_member_id
    assert g.leave(2.0, member_id=b, instance_id=None) == ErrorCode.none
    assert g.state is GroupState.PREPARING
    join(g, 2.1, a)
    assert replies(g)[(a, "join")].members[0][0] == a
    g.leave(3.0, member_id=a, instance_id=None)
    assert g.state is GroupState.EMPTY and g.take_effects()[1], "an emptied group is persisted"


def test_static_member_restart_keeps_its_assignment_without_a_rebalance() -> None:
    g = Group("g")
    first = join(g, 0.0, instance_id="pod-0")
    assert isinstance(first, Waiting), "static members need no KIP-394 round trip"
    replies(g)
    old = first.member_id
    g.sync(0.1, member_id=old, instance_id="pod-0", generation=1, protocol_type=None, protocol_name=None,
           assignments={old: b"A"})
    g.assignment_durable(g.pending_assignment)
    g.take_effects()
    gen = g.generation
    back = join(g, 5.0, instance_id="pod-0")
    assert isinstance(back, JoinReply) and back.error == ErrorCode.none and back.member_id != old
    assert g.generation == gen and g.state is GroupState.STABLE
    s = g.sync(5.1, member_id=back.member_id, instance_id="pod-0", generation=gen, protocol_type=None,
               protocol_name=None, assignments={})
    assert isinstance(s, SyncReply) and s.assignment == b"A"
    # the old incarnation is fenced
    assert g.heartbeat(5.2, member_id=old, instance_id="pod-0", generation=gen) == ErrorCode.fenced_instance_id


def test_bad_joins_get_the_right_codes() -> None:
    g, _ = stable_group(1)
    r = join(g, 1.0, session_timeout_ms=10)
    assert isinstance(r, JoinReply) and r.error == ErrorCode.invalid_session_timeout
    r = join(g, 1.0, protocol_type="connect")
    assert isinstance(r, JoinReply) and r.error == ErrorCode.inconsistent_group_protocol
    r = join(g, 1.0, protocols=[("sticky-only", b"")])
    assert isinstance(r, JoinReply) and r.error == ErrorCode.inconsistent_group_protocol
    r = join(g, 1.0, "made-up-id")
    assert isinstance(r, JoinReply) and r.error == ErrorCode.unknown_member_id
    small = Group("s", limits=Limits(max_size=2))
    new_member(small, 0.0)
    new_member(small, 0.0)
    r = join(small, 0.0)
    assert isinstance(r, JoinReply) and r.error == ErrorCode.group_max_size_reached


def test_protocol_vote_picks_what_most_members_prefer_among_common_ones() -> None:
    g = Group("g", limits=Limits(initial_rebalance_delay_ms=1000))
    new_member(g, 0.0, protocols=[("cooperative-sticky", b""), ("range", b"")])
    new_member(g, 0.0, protocols=[("cooperative-sticky", b""), ("range", b"")])
    new_member(g, 0.0, protocols=[("range", b""), ("cooperative-sticky", b"")])
    g.tick(2.0)
    assert g.protocol == "cooperative-sticky"


def test_commit_rules() -> None:
    g, (a, b) = stable_group(2)
    gen = g.generation
    assert g.check_commit(member_id=a, instance_id=None, generation=gen) == ErrorCode.none
    assert g.check_commit(member_id=a, instance_id=None, generation=gen - 1) == ErrorCode.illegal_generation
    assert g.check_commit(member_id="x", instance_id=None, generation=gen) == ErrorCode.unknown_member_id
    assert g.check_commit(member_id="", instance_id=None, generation=-1) == ErrorCode.unknown_member_id
    empty = Group("e")
    assert empty.check_commit(member_id="", instance_id=None, generation=-1) == ErrorCode.none
    new_member(g, 2.0)
    # an eager consumer commits what it consumed before rejoining: still its generation
    assert g.check_commit(member_id=a, instance_id=None, generation=gen) == ErrorCode.none


def test_snapshot_restores_members_generation_and_assignments() -> None:
    g, ids = stable_group(3)
    h = Group("g")
    h.restore(g.snapshot(), now=50.0)
    assert h.state is GroupState.STABLE and h.generation == g.generation and h.leader == g.leader
    for m in ids:
        s = h.sync(50.1, member_id=m, instance_id=None, generation=g.generation, protocol_type=None,
                   protocol_name=None, assignments={})
        assert isinstance(s, SyncReply) and s.assignment == m.encode()
    assert h.heartbeat(55.0, member_id=ids[0], instance_id=None, generation=g.generation) == ErrorCode.none


def test_subscription_decoding() -> None:
    meta = b"\x00\x01" + b"\x00\x00\x00\x02" + b"\x00\x01a" + b"\x00\x02bc" + b"\xff\xff\xff\xff"
    assert decode_subscription(meta) == ["a", "bc"]
    assert decode_subscription(b"\x00") is None or decode_subscription(b"\x00") == []
    assert decode_subscription(b"\x00\x01\x00\x00\x00\x05\x00\x09ab") is None


def test_joiner_must_share_a_protocol_with_every_member_at_once() -> None:
    g = Group("g", limits=Limits(initial_rebalance_delay_ms=1000))
    new_member(g, 0.0, protocols=[("a", b""), ("b", b"")])
    new_member(g, 0.0, protocols=[("b", b""), ("c", b"")])
    r = join(g, 0.0, protocols=[("a", b""), ("c", b"")])
    assert isinstance(r, JoinReply) and r.error == ErrorCode.inconsistent_group_protocol


def test_stale_incarnation_of_a_static_member_is_fenced_not_unknown() -> None:
    g = Group("g")
    first = join(g, 0.0, instance_id="pod-0")
    assert isinstance(first, Waiting)
    replies(g)
    second = join(g, 1.0, instance_id="pod-0")  # restarted elsewhere: takes over the instance
    assert isinstance(second, (JoinReply, Waiting))
    stale = join(g, 2.0, first.member_id, instance_id="pod-0")
    assert isinstance(stale, JoinReply) and stale.error == ErrorCode.fenced_instance_id


def test_static_rejoin_with_new_subscription_bytes_does_not_rebalance() -> None:
    g = Group("g")
    first = join(g, 0.0, instance_id="pod-0", protocols=[("cooperative-sticky", b"owned:1,2")])
    assert isinstance(first, Waiting)
    replies(g)
    g.sync(0.1, member_id=first.member_id, instance_id="pod-0", generation=1, protocol_type=None,
           protocol_name=None, assignments={first.member_id: b"A"})
    g.assignment_durable(g.pending_assignment)
    g.take_effects()
    back = join(g, 5.0, instance_id="pod-0", protocols=[("cooperative-sticky", b"owned:")])
    assert isinstance(back, JoinReply) and back.error == ErrorCode.none and g.generation == 1
    assert back.skip_assignment, "the static leader is told to skip the assignment"


def test_static_member_silent_through_a_rebalance_keeps_its_place() -> None:
    g = Group("g", limits=Limits(initial_rebalance_delay_ms=500))
    s = join(g, 0.0, instance_id="pod-0", session_timeout_ms=60_000, rebalance_timeout_ms=5_000)
    d = new_member(g, 0.0, session_timeout_ms=60_000, rebalance_timeout_ms=5_000)
    assert isinstance(s, Waiting)
    g.tick(1.0)
    replies(g)
    new_member(g, 2.0, session_timeout_ms=60_000, rebalance_timeout_ms=5_000)  # a rebalance
    join(g, 2.0, d, session_timeout_ms=60_000, rebalance_timeout_ms=5_000)
    g.tick(8.0)  # past the rebalance timeout; the static member never rejoined
    assert s.member_id in g.members and g.state is GroupState.COMPLETING


def test_stale_generation_commit_during_completing_rebalance_is_illegal_generation() -> None:
    g, (a, b) = stable_group(2)
    gen = g.generation
    new_member(g, 2.0)
    join(g, 2.0, a)
    join(g, 2.0, b)  # everyone rejoined: the join phase is over
    assert g.state is GroupState.COMPLETING
    assert g.check_commit(member_id=a, instance_id=None, generation=gen) == ErrorCode.illegal_generation
    assert g.check_commit(member_id=a, instance_id=None, generation=g.generation) == ErrorCode.rebalance_in_progress


def test_a_member_id_handed_out_holds_the_join_until_it_comes_back() -> None:
    g, (a, b) = stable_group(2)
    first = join(g, 2.0)  # KIP-394: gets an id, not yet a member
    assert isinstance(first, JoinReply) and first.error == ErrorCode.member_id_required
    new_member(g, 2.0)  # another newcomer starts the rebalance
    join(g, 2.0, a)
    join(g, 2.0, b)
    assert g.state is GroupState.PREPARING, "waits for the pending member"
    join(g, 2.1, first.member_id)
    assert g.state is GroupState.COMPLETING and len(g.members) == 4
