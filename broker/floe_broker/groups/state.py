"""One consumer group's classic-protocol state machine, free of I/O and clocks.

Every event takes ``now`` (seconds) and either answers at once or says the
member must wait; answers for waiting members (the JoinGroup and SyncGroup
round trips that complete together) collect in ``outbox`` and the coordinator
delivers them. ``persist`` asks the coordinator to write the group's snapshot
before delivering: a completed SyncGroup is only answered once the new
generation and its assignments are durable, so a coordinator that takes over
after a crash or a move knows the same members, generation and assignments.

States and transitions follow Kafka's classic group coordinator::

    Empty --join--> PreparingRebalance --all joined / rebalance timeout--> CompletingRebalance
    CompletingRebalance --leader's SyncGroup--> Stable --join / leave / expiry--> PreparingRebalance
    PreparingRebalance --no members left--> Empty

Assignors run in the client: the broker relays each member's protocol
metadata to the leader and the leader's assignments back, byte for byte.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kio.schema.errors import ErrorCode

from .consumer_protocol import ConsumerGroup

NONE = ErrorCode.none


class GroupState(StrEnum):
    EMPTY = "Empty"
    PREPARING = "PreparingRebalance"
    COMPLETING = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    last_seen: float = 0.0
    awaiting_join: bool = False
    awaiting_sync: bool = False

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def expired(self, now: float) -> bool:
        return now - self.last_seen > self.session_timeout_ms / 1000


@dataclass(frozen=True)
class JoinReply:
    member_id: str
    error: ErrorCode = NONE
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    # (member_id, group_instance_id, metadata): only for the leader
    members: tuple[tuple[str, str | None, bytes], ...] = ()


@dataclass(frozen=True)
class SyncReply:
    error: ErrorCode = NONE
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class Waiting:
    """The member's answer comes later, through ``outbox``."""

    member_id: str


@dataclass(frozen=True)
class OffsetEntry:
    offset: int
    leader_epoch: int
    metadata: str | None
    commit_ms: int


@dataclass(frozen=True)
class Limits:
    min_session_timeout_ms: int = 1000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 0
    max_size: int = 1000


@dataclass
class Group:
    group_id: str
    limits: Limits = field(default_factory=Limits)
    state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)  # member ids handed out (KIP-394), deadline
    instances: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    offsets: dict[tuple[str, int], OffsetEntry] = field(default_factory=dict)
    rebalance_deadline: float = 0.0
    join_delay_until: float = 0.0
    outbox: list[tuple[str, JoinReply | SyncReply]] = field(default_factory=list)
    persist: bool = False
    persisted: dict[str, Any] | None = None  # the last snapshot known durable (what a snapshot rewrites)
    # the leader's assignments for the current generation, being written (see the module docstring)
    pending_assignment: dict[str, bytes] | None = None
    # a KIP-848 consumer-protocol group: its state lives here and the classic fields stay unused
    consumer: ConsumerGroup | None = None
    persisted_kind: str = "g"  # the journal key kind of ``persisted``: "g" classic, "c" consumer protocol

    # ---- queries ------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return not self.members and (self.consumer is None or not self.consumer.members)

    @property
    def unused(self) -> bool:
        """Nothing here and nothing to remember (e.g. created by a join that failed)."""
        return (not self.members and not self.pending and not self.offsets and self.generation == 0
                and (self.consumer is None or (not self.consumer.members and self.consumer.epoch == 0)))

    @property
    def group_type(self) -> str:
        """ListGroups' type: ``consumer`` (KIP-848) or ``classic``."""
        return "classic" if self.consumer is None else "consumer"

    @property
    def state_name(self) -> str:
        return self.state.value if self.consumer is None or self.state is GroupState.DEAD \
            else self.consumer.state_name

    @property
    def listed_protocol_type(self) -> str:
        return "consumer" if self.consumer is not None else (self.protocol_type or "")

    def take_effects(self) -> tuple[list[tuple[str, JoinReply | SyncReply]], bool]:
        out, persist = self.outbox, self.persist
        self.outbox, self.persist = [], False
        return out, persist

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol), None if not decodable."""
        if self.consumer is not None:
            return self.consumer.topic_names()
        if self.protocol_type != "consumer" or self.protocol is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            decoded = decode_subscription(m.metadata_for(self.protocol))
            if decoded is None:
                return None
            topics.update(decoded)
        return topics

    # ---- JoinGroup ----------------------------------------------------------------

    def join(
        self,
        now: float,
        *,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member: bool,
    ) -> JoinReply | Waiting:
        def fail(code: ErrorCode) -> JoinReply:
            return JoinReply(member_id=member_id, error=code)

        if self.state is GroupState.DEAD:
            return fail(ErrorCode.coordinator_not_available)
        lim = self.limits
        if not lim.min_session_timeout_ms <= session_timeout_ms <= lim.max_session_timeout_ms:
            return fail(ErrorCode.invalid_session_timeout)
        if self.consumer is not None:
            if self.consumer.members:
                return fail(ErrorCode.inconsistent_group_protocol)  # Kafka: a classic member never joins it
            self.consumer = None  # an empty consumer-protocol group becomes a classic one, offsets kept
        if not protocol_type or not protocols or not self._protocols_compatible(protocol_type, protocols):
            return fail(ErrorCode.inconsistent_group_protocol)
        rebalance_timeout_ms = rebalance_timeout_ms if rebalance_timeout_ms > 0 else session_timeout_ms

        if not member_id:
            if instance_id is not None and instance_id in self.instances:
                return self._static_rejoin(now, instance_id, client_id, client_host, session_timeout_ms,
                                           rebalance_timeout_ms, protocol_type, protocols)
            if len(self.members) + len(self.pending) >= lim.max_size:
                return fail(ErrorCode.group_max_size_reached)
            new_id = f"{client_id or 'member'}-{uuid.uuid4()}"
            if require_known_member and instance_id is None:
                self.pending[new_id] = now + session_timeout_ms / 1000
                return JoinReply(member_id=new_id, error=ErrorCode.member_id_required)
            member_id = new_id
        elif member_id in self.pending:
            del self.pending[member_id]
        elif instance_id is not None and instance_id in self.instances and self.instances[instance_id] != member_id:
            return fail(ErrorCode.fenced_instance_id)  # Kafka checks fencing first
        elif member_id not in self.members:
            return fail(ErrorCode.unknown_member_id)

        member = self.members.get(member_id)
        if member is None:
            member = Member(member_id, instance_id, client_id, client_host, session_timeout_ms,
                            rebalance_timeout_ms, protocol_type, list(protocols))
            self.members[member_id] = member
            if instance_id is not None:
                self.instances[instance_id] = member_id
            if self.state is GroupState.PREPARING and self.join_delay_until > now:
                # Kafka's group.initial.rebalance.delay: each newcomer extends it (up to the timeout)
                self.join_delay_until = min(now + lim.initial_rebalance_delay_ms / 1000, self.rebalance_deadline)
        else:
            changed = member.protocols != list(protocols)
            member.protocols = list(protocols)
            member.session_timeout_ms, member.rebalance_timeout_ms = session_timeout_ms, rebalance_timeout_ms
            member.client_id, member.client_host = client_id, client_host
            if self.state is GroupState.STABLE and not changed and member_id != self.leader:
                # A follower rejoining with the same metadata: nothing to rebalance.
                member.last_seen = now
                return self._join_reply(member, include_members=False)
        member.last_seen = now
        member.awaiting_join = True
        if self.state is not GroupState.PREPARING:
            self._prepare_rebalance(now)
        self._maybe_complete_join(now)
        return Waiting(member_id)

    def _static_rejoin(
        self, now: float, instance_id: str, client_id: str, client_host: str, session_timeout_ms: int,
        rebalance_timeout_ms: int, protocol_type: str, protocols: list[tuple[str, bytes]],
    ) -> JoinReply | Waiting:
        """KIP-345: a known group.instance.id comes back with a new member id and keeps its assignment."""
        old_id = self.instances[instance_id]
        old = self.members.pop(old_id)
        self._answer_waiting(old, ErrorCode.fenced_instance_id)
        new_id = f"{client_id or 'member'}-{uuid.uuid4()}"
        member = Member(new_id, instance_id, client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                        protocol_type, list(protocols), assignment=old.assignment, last_seen=now)
        self.members[new_id] = member
        self.instances[instance_id] = new_id
        if self.leader == old_id:
            self.leader = new_id
        # KIP-345: new subscription bytes (sticky assignors' owned partitions) alone do not
        # rebalance; only a change of the protocol the group would choose does.
        changed = self._vote() != self.protocol
        if self.state is GroupState.STABLE and not changed:
            self.persist = True
            return self._join_reply(member, include_members=False,
                                    skip_assignment=self.leader == new_id)
        member.awaiting_join = True
        if self.state is not GroupState.PREPARING:
            self._prepare_rebalance(now)
        self._maybe_complete_join(now)
        return Waiting(new_id)

    def _protocols_compatible(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        if not self.members:
            return True
        if any(m.protocol_type != protocol_type for m in self.members.values()):
            return False
        common = set.intersection(*({n for n, _ in m.protocols} for m in self.members.values()))
        return bool(common & {n for n, _ in protocols})

    def _prepare_rebalance(self, now: float) -> None:
        self.pending_assignment = None  # a rebalance overtook the leader's assignment: it is never handed out
        if self.state is GroupState.COMPLETING:
            for m in self.members.values():
                if m.awaiting_sync:
                    m.awaiting_sync = False
                    self.outbox.append((m.member_id, SyncReply(error=ErrorCode.rebalance_in_progress)))
        initial = self.state is GroupState.EMPTY
        self.state = GroupState.PREPARING
        timeout = max((m.rebalance_timeout_ms for m in self.members.values()), default=0) / 1000
        self.rebalance_deadline = now + timeout
        self.join_delay_until = (
            min(now + self.limits.initial_rebalance_delay_ms / 1000, self.rebalance_deadline) if initial else 0.0
        )

    def _maybe_complete_join(self, now: float) -> None:
        if self.state is not GroupState.PREPARING:
            return
        all_joined = all(m.awaiting_join for m in self.members.values()) and not self.pending
        if now < self.rebalance_deadline and (not all_joined or now < self.join_delay_until):
            return
        for m in [m for m in self.members.values() if not m.awaiting_join and m.instance_id is None]:
            self._remove(m)  # did not rejoin within the rebalance timeout (static members keep their session)
        self.generation += 1
        if not self.members:
            self.state, self.protocol, self.leader = GroupState.EMPTY, None, None
            self.persist = True
            return
        first = next(iter(self.members.values()))
        self.protocol_type = first.protocol_type
        self.protocol = self._vote()
        if self.leader not in self.members:
            self.leader = first.member_id
        self.state = GroupState.COMPLETING
        for m in self.members.values():
            m.awaiting_join = False
            m.last_seen = now
            m.assignment = b""
            self.outbox.append((m.member_id, self._join_reply(m, include_members=m.member_id == self.leader)))

    def _vote(self) -> str:
        """Each member votes for its most preferred protocol that every member supports."""
        common = set.intersection(*({n for n, _ in m.protocols} for m in self.members.values()))
        votes: dict[str, int] = {}
        order: list[str] = []
        for m in self.members.values():
            choice = next(n for n, _ in m.protocols if n in common)
            if choice not in votes:
                order.append(choice)
            votes[choice] = votes.get(choice, 0) + 1
        return max(order, key=lambda n: (votes[n], -order.index(n)))

    def _join_reply(self, m: Member, *, include_members: bool, skip_assignment: bool = False) -> JoinReply:
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        if include_members or skip_assignment:
            members = tuple((x.member_id, x.instance_id, x.metadata_for(self.protocol))
                            for x in self.members.values())
        return JoinReply(member_id=m.member_id, generation=self.generation, protocol_type=self.protocol_type,
                         protocol_name=self.protocol, leader=self.leader or "", members=members,
                         skip_assignment=skip_assignment)

    # ---- SyncGroup / Heartbeat / LeaveGroup -------------------------------------------

    def _check_member(self, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        if instance_id is not None and instance_id in self.instances and self.instances[instance_id] != member_id:
            return ErrorCode.fenced_instance_id
        if member_id not in self.members:
            return ErrorCode.unknown_member_id
        if generation != self.generation:
            return ErrorCode.illegal_generation
        return NONE

    def sync(
        self,
        now: float,
        *,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncReply | Waiting:
        if self.state is GroupState.DEAD:
            return SyncReply(error=ErrorCode.coordinator_not_available)
        code = self._check_member(member_id, instance_id, generation)
        if code != NONE:
            return SyncReply(error=code)
        if (protocol_type is not None and protocol_type != self.protocol_type) or (
            protocol_name is not None and protocol_name != self.protocol
        ):
            return SyncReply(error=ErrorCode.inconsistent_group_protocol)
        member = self.members[member_id]
        member.last_seen = now
        if self.state is GroupState.PREPARING:
            return SyncReply(error=ErrorCode.rebalance_in_progress)
        if self.state is GroupState.STABLE:
            return self._sync_reply(member)
        member.awaiting_sync = True
        if member_id == self.leader:
            # Nothing is handed out yet: the coordinator writes these first (assignment_durable).
            self.pending_assignment = {m: assignments.get(m, b"") for m in self.members}
            self.persist = True
        return Waiting(member_id)

    def assignment_durable(self, written: dict[str, bytes] | None) -> None:
        """The write carrying ``written`` (the pending assignment then) is durable: go Stable and answer,
        the leader first. A no-op if a rebalance or a newer leader SyncGroup overtook that write."""
        if written is None or written is not self.pending_assignment or self.state is not GroupState.COMPLETING:
            return
        self.pending_assignment = None
        for m in self.members.values():
            m.assignment = written.get(m.member_id, b"")
        self.state = GroupState.STABLE
        leader = self.members.get(self.leader or "")
        order = ([leader] if leader is not None else []) + [m for m in self.members.values() if m is not leader]
        for m in order:
            if m.awaiting_sync:
                m.awaiting_sync = False
                self.outbox.append((m.member_id, self._sync_reply(m)))

    def _sync_reply(self, m: Member) -> SyncReply:
        return SyncReply(protocol_type=self.protocol_type, protocol_name=self.protocol, assignment=m.assignment)

    def heartbeat(self, now: float, *, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        if self.state is GroupState.DEAD:
            return ErrorCode.coordinator_not_available
        code = self._check_member(member_id, instance_id, generation)
        if code != NONE:
            return code
        self.members[member_id].last_seen = now
        if self.state is GroupState.PREPARING:
            return ErrorCode.rebalance_in_progress
        return NONE

    def leave(self, now: float, *, member_id: str, instance_id: str | None) -> ErrorCode:
        if instance_id is not None:
            known = self.instances.get(instance_id)
            if known is None:
                return ErrorCode.unknown_member_id
            if member_id and member_id != known:
                return ErrorCode.fenced_instance_id
            member_id = known
        if member_id in self.pending:
            del self.pending[member_id]
            return NONE
        member = self.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id
        self._answer_waiting(member, ErrorCode.unknown_member_id)
        self._remove(member)
        self._membership_changed(now)
        return NONE

    def _answer_waiting(self, m: Member, code: ErrorCode) -> None:
        if m.awaiting_join:
            self.outbox.append((m.member_id, JoinReply(member_id=m.member_id, error=code)))
        if m.awaiting_sync:
            self.outbox.append((m.member_id, SyncReply(error=code)))
        m.awaiting_join = m.awaiting_sync = False

    def _remove(self, m: Member) -> None:
        self.members.pop(m.member_id, None)
        if m.instance_id is not None and self.instances.get(m.instance_id) == m.member_id:
            del self.instances[m.instance_id]

    def _membership_changed(self, now: float) -> None:
        if self.state in (GroupState.STABLE, GroupState.COMPLETING):
            self._prepare_rebalance(now)
        self._maybe_complete_join(now)

    # ---- time ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Expire silent members and pending ids; finish a join phase whose time is up."""
        if self.consumer is not None:
            if self.consumer.tick(now):
                self.persist = True
            return
        for pid in [p for p, deadline in self.pending.items() if deadline < now]:
            del self.pending[pid]
        expired = [m for m in self.members.values() if not m.awaiting_join and m.expired(now)]
        for m in expired:
            self._answer_waiting(m, ErrorCode.unknown_member_id)
            self._remove(m)
        if expired:
            self._membership_changed(now)
        else:
            self._maybe_complete_join(now)

    # ---- offsets --------------------------------------------------------------------

    def check_commit(self, *, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        """May this OffsetCommit be applied? (Kafka's rules for classic groups.)"""
        if self.state is GroupState.DEAD:
            return ErrorCode.coordinator_not_available
        if self.consumer is not None:
            if generation < 0 and not member_id and self.consumer.members:
                return ErrorCode.unknown_member_id  # a simple commit needs an empty group, as for classic ones
            return self.consumer.check_member_epoch(member_id, generation)
        if instance_id is not None and instance_id in self.instances and self.instances[instance_id] != member_id:
            return ErrorCode.fenced_instance_id
        if generation < 0 and self.state is GroupState.EMPTY:
            return NONE  # a consumer that manages its own partitions (no group membership)
        if member_id not in self.members:
            return ErrorCode.unknown_member_id
        if generation != self.generation:
            return ErrorCode.illegal_generation
        if self.state is GroupState.COMPLETING:
            return ErrorCode.rebalance_in_progress
        return NONE

    # ---- snapshots ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The durable part of the group: generation, protocol, members and assignments.

        A leader's assignment being written counts as done: a coordinator that
        restores this snapshot answers the group's SyncGroups from it."""
        pending = self.pending_assignment
        return {
            "generation": self.generation,
            "protocol_type": self.protocol_type,
            "protocol": self.protocol,
            "leader": self.leader,
            "members": [
                {
                    "id": m.member_id, "instance": m.instance_id, "client": m.client_id, "host": m.client_host,
                    "session_ms": m.session_timeout_ms, "rebalance_ms": m.rebalance_timeout_ms,
                    "protocols": [[n, meta.hex()] for n, meta in m.protocols],
                    "assignment": (pending.get(m.member_id, b"") if pending is not None else m.assignment).hex(),
                }
                for m in self.members.values()
            ],
        }

    def restore(self, snap: dict[str, Any], now: float) -> None:
        """Load a snapshot; members get a fresh session to find the new coordinator."""
        self.persisted, self.persisted_kind, self.consumer = snap, "g", None
        self.generation = int(snap["generation"])
        self.protocol_type = snap.get("protocol_type")
        self.protocol = snap.get("protocol")
        self.leader = snap.get("leader")
        self.members.clear()
        self.instances.clear()
        for d in snap.get("members", []):
            m = Member(d["id"], d.get("instance"), d.get("client", ""), d.get("host", ""), int(d["session_ms"]),
                       int(d["rebalance_ms"]), self.protocol_type or "",
                       [(n, bytes.fromhex(h)) for n, h in d.get("protocols", [])],
                       assignment=bytes.fromhex(d.get("assignment", "")), last_seen=now)
            self.members[m.member_id] = m
            if m.instance_id is not None:
                self.instances[m.instance_id] = m.member_id
        self.state = GroupState.STABLE if self.members else GroupState.EMPTY


def decode_subscription(meta: bytes) -> list[str] | None:
    """Topics of a ConsumerProtocolSubscription (version, [topic]), or None if it does not parse."""
    try:
        pos = 2
        count = int.from_bytes(meta[pos : pos + 4], "big", signed=True)
        pos += 4
        if count < 0 or count > 100_000:
            return None
        topics = []
        for _ in range(count):
            n = int.from_bytes(meta[pos : pos + 2], "big", signed=True)
            pos += 2
            if n < 0 or pos + n > len(meta):
                return None
            topics.append(meta[pos : pos + n].decode())
            pos += n
        return topics
    except (UnicodeDecodeError, ValueError):
        return None
