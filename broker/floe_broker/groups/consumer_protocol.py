"""One KIP-848 consumer group (``group.protocol=consumer``): the state machine, free of I/O and clocks.

The coordinator owns the assignment. Each ConsumerGroupHeartbeat brings the
member's subscription (names or a regex) and the partitions it owns, and gets
back its member epoch and, when it changed, the partitions it may own now.

- The **group epoch** goes up whenever what the assignment depends on changes
  (a member joins, leaves or expires, a subscription changes, a subscribed
  topic appears, disappears or grows); the **target assignment** is then
  recomputed with the group's server-side assignor (``assignors.py``).
- Each member **reconciles** towards its target: partitions it must give up
  are revoked first (the member keeps its epoch and is sent only what it
  keeps); once it reports them released it moves to the new epoch, and a
  newly assigned partition is handed out only when no other member still
  owns it or is revoking it. So a partition is never owned by two members.
- A member that stops heartbeating for its session timeout, or does not
  revoke within its rebalance timeout, is removed and its partitions freed.
- Static members (``group.instance.id``) leave with epoch -2 and keep their
  place and partitions until the session timeout; the same instance id
  joining again (new member id, epoch 0) takes over both. Joining with an
  instance id still in use is refused with UNRELEASED_INSTANCE_ID.

Regular expressions (``subscribed_topic_regex``) are Kafka's RE2/J syntax;
they are matched here with Python's ``re`` (``fullmatch``), which agrees on
the common patterns (literals, classes, ``.*``, alternation, anchors) but not
on every construct. Internal topics (names starting ``__``) never match.

The durable form is :meth:`ConsumerGroup.snapshot`, one versioned JSON
document per group, written through the journal before any answer that
depends on it, so a new coordinator resumes with the same epochs and
assignments (docs/architecture.md#consumer-groups-and-producer-ids).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from .assignors import ASSIGNORS, DEFAULT_ASSIGNOR, Assignment

NONE = ErrorCode.none
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class TopicMeta:
    topic_id: str
    name: str
    partitions: int


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_names: tuple[str, ...] = ()
    subscribed_regex: str | None = None
    assignor: str | None = None
    rebalance_timeout_ms: int = 300_000
    session_timeout_ms: int = 45_000
    epoch: int = 0
    previous_epoch: int = -1
    assigned: Assignment = field(default_factory=dict)
    revoking: Assignment = field(default_factory=dict)
    topics: frozenset[str] = frozenset()  # subscribed topic ids, as last resolved
    left: bool = False  # a static member away (epoch -2) that keeps its place
    last_seen: float = 0.0
    revoke_deadline: float = 0.0

    @property
    def reconciling(self) -> bool:
        return bool(self.revoking)


@dataclass(frozen=True)
class HeartbeatRequest:
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_names: tuple[str, ...] | None = None
    subscribed_regex: str | None = None
    server_assignor: str | None = None
    owned: Assignment | None = None
    client_id: str = ""
    client_host: str = ""
    session_timeout_ms: int = 45_000
    member_id_from_client: bool = True  # v1 and later: the client makes its own member id


@dataclass(frozen=True)
class HeartbeatReply:
    member_id: str
    epoch: int
    error: ErrorCode = NONE
    message: str | None = None
    assignment: Assignment | None = None  # None: unchanged, the client keeps what it has
    changed: bool = False  # the group changed: persist before answering


def _copy(a: Mapping[str, set[int]]) -> Assignment:
    return {t: set(ps) for t, ps in a.items() if ps}


def _minus(a: Assignment, b: Mapping[str, set[int]]) -> Assignment:
    return {t: ps - b.get(t, set()) for t, ps in a.items() if ps - b.get(t, set())}


def _and(a: Assignment, b: Mapping[str, set[int]]) -> Assignment:
    return {t: ps & b.get(t, set()) for t, ps in a.items() if ps & b.get(t, set())}


def _intersects(a: Mapping[str, set[int]], b: Mapping[str, set[int]]) -> bool:
    return any(ps & b.get(t, set()) for t, ps in a.items())


@dataclass
class ConsumerGroup:
    group_id: str
    max_size: int = 1000
    epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    meta: dict[str, tuple[str, int]] = field(default_factory=dict)  # subscribed topic id -> (name, partitions)

    # ---- queries --------------------------------------------------------------------

    @property
    def state_name(self) -> str:
        """Kafka's consumer group states: Empty, Assigning, Reconciling, Stable."""
        if not self.members:
            return "Empty"
        if self.assignment_epoch != self.epoch:
            return "Assigning"
        if any(m.epoch != self.assignment_epoch or m.revoking or
               _minus(self.target.get(m.member_id, {}), m.assigned) for m in self.members.values()):
            return "Reconciling"
        return "Stable"

    @property
    def assignor(self) -> str:
        """The assignor most members ask for (ties: the first asked for), ``uniform`` if none."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.assignor:
                votes[m.assignor] = votes.get(m.assignor, 0) + 1
        return max(votes, key=lambda a: votes[a]) if votes else DEFAULT_ASSIGNOR

    def topic_names(self) -> set[str]:
        return {name for name, _ in self.meta.values()}

    def _owners(self, exclude: str) -> set[tuple[str, int]]:
        taken: set[tuple[str, int]] = set()
        for m in self.members.values():
            if m.member_id == exclude:
                continue
            for part in (m.assigned, m.revoking):
                taken.update((t, p) for t, ps in part.items() for p in ps)
        return taken

    # ---- the heartbeat ---------------------------------------------------------------

    def heartbeat(self, now: float, r: HeartbeatRequest, topics: Mapping[str, TopicMeta]) -> HeartbeatReply:
        def fail(code: ErrorCode, message: str | None = None) -> HeartbeatReply:
            return HeartbeatReply(member_id=r.member_id, epoch=-1, error=code, message=message)

        if r.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(now, r, topics)
        if r.member_epoch == 0:
            if not r.member_id and r.member_id_from_client:
                return fail(ErrorCode.invalid_request, "MemberId can't be empty.")
            if r.rebalance_timeout_ms < 0:
                return fail(ErrorCode.invalid_request, "RebalanceTimeoutMs must be provided in first request.")
            if r.owned is None or any(r.owned.values()):
                return fail(ErrorCode.invalid_request, "TopicPartitions must be empty when (re-)joining.")
            if r.subscribed_names is None and r.subscribed_regex is None:
                return fail(ErrorCode.invalid_request,
                            "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
        if r.server_assignor is not None and r.server_assignor not in ASSIGNORS:
            return fail(ErrorCode.unsupported_assignor,
                        f"ServerAssignor {r.server_assignor} is not supported. Supported assignors: "
                        f"{', '.join(sorted(ASSIGNORS))}.")
        if r.subscribed_regex:
            try:
                re.compile(r.subscribed_regex)
            except re.error as exc:
                return fail(ErrorCode.invalid_regular_expression, f"SubscribedTopicRegex is invalid: {exc}")
        changed = False
        if r.member_epoch == 0:
            joined = self._join(now, r)
            if isinstance(joined, HeartbeatReply):
                return joined
            m, changed = joined
        else:
            known = self.members.get(r.member_id)
            if known is None:
                return fail(ErrorCode.unknown_member_id, f"Member {r.member_id} is not a member of the group.")
            m = known
            lost_answer = (r.member_epoch == m.previous_epoch and r.owned is not None
                           and not _minus(_copy(r.owned), m.assigned))
            if m.left or (r.member_epoch != m.epoch and not lost_answer):
                return fail(ErrorCode.fenced_member_epoch,
                            f"The consumer group member has a different epoch ({m.epoch}) than the one in the "
                            f"request ({r.member_epoch}).")
        m.last_seen = now
        m.client_id, m.client_host, m.session_timeout_ms = r.client_id, r.client_host, r.session_timeout_ms
        if r.rack_id is not None:
            m.rack_id = r.rack_id
        if r.rebalance_timeout_ms >= 0:
            m.rebalance_timeout_ms = r.rebalance_timeout_ms
        if r.subscribed_names is not None and tuple(sorted(r.subscribed_names)) != m.subscribed_names:
            m.subscribed_names, changed = tuple(sorted(r.subscribed_names)), True
        if r.subscribed_regex is not None and (r.subscribed_regex or None) != m.subscribed_regex:
            m.subscribed_regex, changed = r.subscribed_regex or None, True
        if r.server_assignor is not None and r.server_assignor != m.assignor:
            m.assignor, changed = r.server_assignor, True
        changed = self._refresh(topics, force=changed) or changed
        before = (m.epoch, _copy(m.assigned), _copy(m.revoking))
        self._reconcile(now, m, _copy(r.owned) if r.owned is not None else None)
        after = (m.epoch, m.assigned, m.revoking)
        changed = changed or after != before
        send = r.member_epoch == 0 or m.assigned != before[1] or (r.owned is not None and _copy(r.owned) != m.assigned)
        return HeartbeatReply(member_id=m.member_id, epoch=m.epoch, assignment=_copy(m.assigned) if send else None,
                              changed=changed)

    def _join(self, now: float, r: HeartbeatRequest) -> tuple[ConsumerMember, bool] | HeartbeatReply:
        member_id = r.member_id or str(uuid.uuid4())
        if r.instance_id is not None:
            old_id = next((mid for mid, x in self.members.items() if x.instance_id == r.instance_id), None)
            if old_id is not None and old_id != member_id:
                old = self.members[old_id]
                if not old.left:
                    return HeartbeatReply(member_id=member_id, epoch=-1, error=ErrorCode.unreleased_instance_id,
                                          message=f"Static member {old_id} with instance id {r.instance_id} "
                                                  "is not released yet.")
                # KIP-848: the new incarnation takes over the static member's epoch and partitions.
                del self.members[old_id]
                old.member_id, old.left = member_id, False
                self.members[member_id] = old
                if old_id in self.target:
                    self.target[member_id] = self.target.pop(old_id)
                return old, True
        existing = self.members.get(member_id)
        if existing is not None:
            # A known member joining again has dropped its partitions: start it over.
            self._remove(existing)
        elif len(self.members) >= self.max_size:
            return HeartbeatReply(member_id=member_id, epoch=-1, error=ErrorCode.group_max_size_reached,
                                  message=f"The consumer group has reached its maximum capacity of "
                                          f"{self.max_size} members.")
        m = ConsumerMember(member_id=member_id, instance_id=r.instance_id, last_seen=now)
        self.members[member_id] = m
        return m, True

    def _leave(self, now: float, r: HeartbeatRequest, topics: Mapping[str, TopicMeta]) -> HeartbeatReply:
        m = self.members.get(r.member_id)
        if m is None and r.instance_id is not None:
            m = next((x for x in self.members.values() if x.instance_id == r.instance_id), None)
        if m is None:
            return HeartbeatReply(member_id=r.member_id, epoch=-1, error=ErrorCode.unknown_member_id,
                                  message=f"Member {r.member_id} is not a member of the group.")
        if r.member_epoch == STATIC_LEAVE_EPOCH:
            if m.instance_id is None:
                return HeartbeatReply(member_id=r.member_id, epoch=-1, error=ErrorCode.invalid_request,
                                      message="Only static members leave with epoch -2.")
            m.left = True
            m.last_seen = now
            return HeartbeatReply(member_id=m.member_id, epoch=STATIC_LEAVE_EPOCH, changed=True)
        self._remove(m)
        self._refresh(topics, force=True)
        return HeartbeatReply(member_id=m.member_id, epoch=LEAVE_EPOCH, changed=True)

    def _remove(self, m: ConsumerMember) -> None:
        self.members.pop(m.member_id, None)
        self.target.pop(m.member_id, None)

    # ---- assignment -------------------------------------------------------------------

    def _resolve(self, m: ConsumerMember, topics: Mapping[str, TopicMeta]) -> frozenset[str]:
        ids = {topics[n].topic_id for n in m.subscribed_names if n in topics}
        if m.subscribed_regex:
            pattern = re.compile(m.subscribed_regex)
            ids.update(t.topic_id for n, t in topics.items() if not n.startswith("__") and pattern.fullmatch(n))
        return frozenset(ids)

    def _refresh(self, topics: Mapping[str, TopicMeta], *, force: bool) -> bool:
        """Resolve subscriptions against the topics; a new group epoch and target if anything moved."""
        by_id = {t.topic_id: t for t in topics.values()}
        moved = force
        for m in self.members.values():
            ids = self._resolve(m, topics)
            if ids != m.topics:
                m.topics, moved = ids, True
        meta = {tid: (by_id[tid].name, by_id[tid].partitions)
                for m in self.members.values() for tid in m.topics}
        if meta != self.meta:
            self.meta, moved = meta, True
        if moved:
            self._new_target()
        return moved

    def _new_target(self) -> None:
        self.epoch += 1
        assign = ASSIGNORS[self.assignor]
        self.target = assign({mid: set(m.topics) for mid, m in self.members.items()},
                             {mid: m.instance_id for mid, m in self.members.items()},
                             {tid: n for tid, (_, n) in self.meta.items()}, self.target)
        self.assignment_epoch = self.epoch

    def _reconcile(self, now: float, m: ConsumerMember, owned: Assignment | None) -> None:
        """Move the member one step towards its target (Kafka's CurrentAssignmentBuilder)."""
        if m.revoking:
            if owned is None or _intersects(owned, m.revoking):
                return  # still owns what it must give up
            m.revoking, m.revoke_deadline = {}, 0.0
        target = self.target.get(m.member_id, {})
        if m.epoch != self.assignment_epoch:
            revoke = _minus(m.assigned, target)
            if revoke:
                m.assigned, m.revoking = _and(m.assigned, target), revoke
                m.revoke_deadline = now + m.rebalance_timeout_ms / 1000
                return
            m.previous_epoch, m.epoch = m.epoch, self.assignment_epoch
        wanted = _minus(_copy(target), m.assigned)
        if wanted:
            taken = self._owners(m.member_id)
            for t, ps in wanted.items():
                free = {p for p in ps if (t, p) not in taken}
                if free:
                    m.assigned.setdefault(t, set()).update(free)

    # ---- time -----------------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """Remove members whose session expired or who did not revoke in time; True if the group changed."""
        gone = [m for m in self.members.values()
                if now - m.last_seen > m.session_timeout_ms / 1000
                or (m.revoking and m.revoke_deadline and now > m.revoke_deadline)]
        for m in gone:
            self._remove(m)
        if gone:
            self.meta = {tid: v for tid, v in self.meta.items() if any(tid in m.topics for m in self.members.values())}
            self._new_target()
        return bool(gone)

    # ---- offsets ----------------------------------------------------------------------

    def check_member_epoch(self, member_id: str, epoch: int) -> ErrorCode:
        """OffsetCommit and OffsetFetch of a consumer group: Kafka's member epoch rules."""
        if epoch < 0 and not member_id:
            return NONE  # an admin client or a consumer managing its own partitions
        m = self.members.get(member_id)
        if m is None:
            return ErrorCode.unknown_member_id
        if epoch > m.epoch:
            return ErrorCode.fenced_member_epoch
        if epoch < m.epoch:
            return ErrorCode.stale_member_epoch
        return NONE

    # ---- durable form -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        def parts(a: Assignment) -> dict[str, list[int]]:
            return {t: sorted(ps) for t, ps in sorted(a.items()) if ps}

        return {
            "v": SNAPSHOT_VERSION, "epoch": self.epoch, "assignment_epoch": self.assignment_epoch,
            "meta": {tid: [name, n] for tid, (name, n) in sorted(self.meta.items())},
            "target": {mid: parts(a) for mid, a in sorted(self.target.items())},
            "members": [
                {"id": m.member_id, "instance": m.instance_id, "rack": m.rack_id, "client": m.client_id,
                 "host": m.client_host, "names": list(m.subscribed_names), "regex": m.subscribed_regex,
                 "assignor": m.assignor, "rebalance_ms": m.rebalance_timeout_ms, "session_ms": m.session_timeout_ms,
                 "epoch": m.epoch, "previous_epoch": m.previous_epoch, "assigned": parts(m.assigned),
                 "revoking": parts(m.revoking), "topics": sorted(m.topics), "left": m.left}
                for m in self.members.values()
            ],
        }

    @classmethod
    def restore(cls, group_id: str, snap: dict[str, Any], now: float, max_size: int = 1000) -> ConsumerGroup:
        """Load a snapshot; every member gets a fresh session (and revocation time) to find this coordinator."""
        if int(snap.get("v", 0)) != SNAPSHOT_VERSION:
            raise ValueError(f"unknown consumer group record version {snap.get('v')!r}")

        def parts(d: dict[str, list[int]]) -> Assignment:
            return {t: set(ps) for t, ps in d.items()}

        g = cls(group_id, max_size=max_size, epoch=int(snap["epoch"]),
                assignment_epoch=int(snap["assignment_epoch"]),
                meta={tid: (v[0], int(v[1])) for tid, v in snap.get("meta", {}).items()},
                target={mid: parts(a) for mid, a in snap.get("target", {}).items()})
        for d in snap.get("members", []):
            m = ConsumerMember(
                member_id=d["id"], instance_id=d.get("instance"), rack_id=d.get("rack"),
                client_id=d.get("client", ""), client_host=d.get("host", ""),
                subscribed_names=tuple(d.get("names", ())), subscribed_regex=d.get("regex"),
                assignor=d.get("assignor"), rebalance_timeout_ms=int(d["rebalance_ms"]),
                session_timeout_ms=int(d["session_ms"]), epoch=int(d["epoch"]),
                previous_epoch=int(d.get("previous_epoch", -1)), assigned=parts(d.get("assigned", {})),
                revoking=parts(d.get("revoking", {})), topics=frozenset(d.get("topics", ())),
                left=bool(d.get("left", False)), last_seen=now)
            if m.revoking:
                m.revoke_deadline = now + m.rebalance_timeout_ms / 1000
            g.members[m.member_id] = m
        return g
