"""The controller: lease, membership, placement, failover with fencing.

Any broker can be the controller. It holds ``meta/controller`` (a lease with
an expiry, renewed by CAS) and is the only writer of the metadata: each
commit creates the next version's delta key (``cluster.metadata_log``),
create-only. Losing the lease is harmless: the next lease holder reads the
metadata and commits a version at once, so every later commit of the old
controller fails on a key that is taken.

Node ids are integers handed out from ``next_node_id``; a process that
restarts registers again and gets a new id, so an id is never reused while
its old process could still be alive.

Failover: a broker that has not heartbeated within the session timeout has
its session fenced (I3, docs/architecture.md#i3-fencing) by :func:`fence_session`, then its partitions get a
new leader at epoch+1. The new leader recovers the tail from the fenced
session's WAL (see ``log.manager``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from floe_api.public import MoveResult

from ..errors import NotController, NotFound, PreconditionFailed, StoreUnavailable
from ..storage.health import state_of
from ..storage.layout import LEASE_KEY, TOMBSTONE, seq_of, unanswered_key, wal_key, wal_prefix
from ..storage.objectstore import ObjectStore, retrying
from .delta import Delta, diff
from .metadata import BrokerInfo, ClusterState, allocate_producer_ids
from .metadata_log import Conflict, MetadataLog

log = structlog.get_logger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_session() -> str:
    return uuid.uuid4().hex[:16]


async def fence_session(store: ObjectStore, node: int, session: str) -> int:
    """Make ``session`` unable to commit another WAL object (I3); return the tombstone seq.

    Every missing seq below the highest written one, and the next one, gets a
    create-only tombstone. A 412 on one of them means the session wrote it
    first; we then look again above it. Afterwards the session's WAL is a
    closed prefix: recovery reads up to the first tombstone.
    """
    prefix = wal_prefix(node, session)
    while True:
        keys = await retrying(lambda: store.list(prefix))
        seqs = {seq_of(k) for k in keys}
        top = max(seqs, default=0)
        gaps = [s for s in range(1, top + 1) if s not in seqs]
        lost_race = False
        for seq in [*gaps, top + 1]:
            key = wal_key(node, session, seq)
            try:
                await retrying(lambda k=key: store.put(k, TOMBSTONE, if_none_match=True))  # type: ignore[misc]
            except PreconditionFailed:
                got = await retrying(lambda k=key: store.get(k))  # type: ignore[misc]
                if got.data != TOMBSTONE:
                    lost_race = True
        if not lost_race:
            return top + 1


@dataclass
class Lease:
    holder: str  # session of the holding process
    http: str
    epoch: int
    expires_ms: int

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Lease:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Committed:
    """One commit: the new metadata and the delta (as stored) that made it from the one before."""

    state: ClusterState
    delta: bytes


class Peers(Protocol):
    """How the controller reaches brokers (itself included)."""

    async def release(self, node: int, topic: str, index: int, epoch: int) -> None:
        """The old leader stops taking produce, makes pending data durable,
        writes a clean checkpoint and promises never to reopen at <= epoch."""

    async def push(self, node: int, committed: Committed) -> None:
        """Give a broker new metadata; returns once it opened/closed its partitions."""

    async def answers(self, node: int, *, timeout_s: float) -> bool:
        """Whether the broker's process answers on its admin port within ``timeout_s`` (a liveness probe)."""


class Controller:
    """Controller logic; active only while :attr:`active` (lease held)."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        session: str,
        http: str,
        session_timeout_ms: int,
        on_change: Callable[[Committed], Awaitable[None]] | None = None,
        metadata_log: MetadataLog | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.http = http
        self.session_timeout_ms = session_timeout_ms
        self.on_change = on_change
        self.active = False
        self.lease: Lease | None = None
        self._lease_etag: str | None = None
        self.state: ClusterState | None = None
        self.log = metadata_log or MetadataLog(store)
        self._snapshotting: asyncio.Task[None] | None = None
        self._last_seen: dict[int, int] = {}
        self._store_lost_ms: dict[int, int] = {}  # member -> when it first reported its store unavailable
        self._last_check_ms = 0  # when check_liveness last ran: a long gap means we were stalled
        self._no_lease_until = 0.0  # time.monotonic() before which we do not take the lease (after stepping down)
        self._lock = asyncio.Lock()
        self._move_lock = asyncio.Lock()
        self.peers: Peers | None = None

    # ---- lease ----------------------------------------------------------------

    async def try_acquire(self) -> bool:
        """Take the lease if it is free or expired. Returns whether we hold it."""
        if time.monotonic() < self._no_lease_until:
            return False  # we stepped down, cut off from the members: one of them takes it
        try:
            got = await self.store.get(LEASE_KEY)
            current: Lease | None = Lease.from_bytes(got.data)
            etag: str | None = got.etag
        except NotFound:
            current, etag = None, None
        assert current is None or etag is not None
        if current is not None and current.holder != self.session and current.expires_ms > now_ms():
            return False
        epoch = (current.epoch + 1) if current and current.holder != self.session else (current.epoch if current else 1)
        lease = Lease(self.session, self.http, epoch, now_ms() + self.session_timeout_ms)
        try:
            if etag is None:
                new_etag = await self.store.put(LEASE_KEY, lease.to_bytes(), if_none_match=True)
            else:
                new_etag = await self.store.put(LEASE_KEY, lease.to_bytes(), if_match=etag)
        except (PreconditionFailed, StoreUnavailable):
            return False
        was_active = self.active
        self.lease, self._lease_etag = lease, new_etag
        if not was_active:
            # The lease we took over is the old holder's last heartbeat: it renewed it at
            # expiry minus one lease duration, and has not been heard from since.
            previous = (current.holder, current.expires_ms - self.session_timeout_ms) \
                if current is not None and current.holder != self.session else None
            try:
                await self._become_active(previous)
            except (StoreUnavailable, NotController):
                return False
        return True

    async def renew(self, *, reacquire: bool = True) -> bool:
        """Extend our lease. False only when another session holds it now.

        While the store is unreachable we keep our state but stop acting as
        controller once the lease may have run out; the next successful round
        takes it back if nobody else did (any write we then make is a CAS, so a
        stale view cannot overwrite a newer controller's work). Inside a commit,
        ``reacquire=False``: taking the lease again commits, and the commit lock is held.
        """
        if self.lease is None:
            return False
        if self.active and self._lease_etag is not None:
            lease = Lease(self.session, self.http, self.lease.epoch, now_ms() + self.session_timeout_ms)
            try:
                self._lease_etag = await self.store.put(LEASE_KEY, lease.to_bytes(), if_match=self._lease_etag)
                self.lease = lease
                return True
            except PreconditionFailed:
                self.active = False
            except StoreUnavailable:
                if self.lease.expires_ms - now_ms() < self.session_timeout_ms // 2:
                    self.active = False
                return True
        try:
            got = await self.store.get(LEASE_KEY)
        except (StoreUnavailable, NotFound):
            return True  # unknown: try again next round
        holder = Lease.from_bytes(got.data)
        if holder.holder != self.session and holder.expires_ms > now_ms():
            log.warning("controller lease now held by another broker", holder=holder.holder)
            return False
        if not reacquire:
            return False
        return await self.try_acquire() or True

    async def release(self) -> None:
        """Give the lease up at once (clean shutdown) so a successor need not wait for expiry."""
        if not self.active or self.lease is None or self._lease_etag is None:
            return
        self.active = False
        lease = Lease(self.session, self.http, self.lease.epoch, 0)
        try:
            await self.store.put(LEASE_KEY, lease.to_bytes(), if_match=self._lease_etag)
        except (PreconditionFailed, StoreUnavailable):
            pass

    async def leave(self, node: int) -> None:
        """A draining broker leaves: its partitions lose their leader until placed again."""

        def change(s: ClusterState) -> None:
            s.brokers.pop(node, None)
            self._reassign_orphans(s)

        await self.commit(change)
        self._last_seen.pop(node, None)
        self._store_lost_ms.pop(node, None)

    async def _become_active(self, previous: tuple[str, int] | None = None) -> None:
        """Load the metadata, commit a version at once, and start judging sessions.

        ``previous`` is the session that held the lease before us and when it last renewed
        it: its last heartbeat. Every other broker gets a full session timeout from now (it
        was heartbeating to a controller that is gone), but a previous holder that stopped
        renewing a session timeout ago and does not answer its admin port is failed in the
        very first commit, so a dead controller's lease and session run out together instead
        of one after the other (and no commit waits on pushes to it). Acting early is safe:
        fencing is the WAL tombstones and the epoch CAS, not timing, and the deposed
        controller's next commit finds its version key taken.
        """
        await self._load()
        assert self.state is not None
        await self.log.ensure_base(self.state, self.session)
        self.active = True
        dead = await self._dead_previous_holder(previous)
        if dead is None:
            # Commit a version at once so a deposed controller's next commit finds its key taken.
            await self.commit(lambda s: None)
        else:
            node, session = dead
            log.warning("previous controller's lease and session ran out; fencing", node=node, session=session)
            await fence_session(self.store, node, session)
            await self.commit(lambda s: self._drop_failed(s, node, session))
        start = now_ms()
        assert self.state is not None
        self._last_seen = {n: start for n in self.state.brokers}
        self._store_lost_ms = {}
        self._last_check_ms = 0  # a fresh start, not a stall
        log.info("became controller", epoch=self.lease.epoch if self.lease else None)

    async def _dead_previous_holder(self, previous: tuple[str, int] | None) -> tuple[int, str] | None:
        """The previous lease holder's (node, session) if it is silent for a session timeout and does not answer."""
        if previous is None or self.state is None:
            return None
        holder, renewed_ms = previous
        for n, b in self.state.brokers.items():
            if b.session != holder or renewed_ms > now_ms() - self.session_timeout_ms:
                continue
            # A holder that still answers only lost the lease (a store outage, a slow
            # renewal): it keeps a full session timeout to heartbeat to us as a member.
            if self.peers is not None and await self.peers.answers(n, timeout_s=self.session_timeout_ms / 1000):
                return None
            return n, b.session
        return None

    async def _load(self) -> None:
        self.state = await self.log.load()

    # ---- commits ---------------------------------------------------------------

    async def commit(self, change: Callable[[ClusterState], object]) -> ClusterState:
        """Apply ``change`` to a copy of the state and commit it as the next version's delta.

        The delta's key is created create-only, so of two controllers only one commits a
        version; the other reads what was committed and tries again on top of it, while it
        still holds the lease.
        """
        async with self._lock:
            while True:
                if not self.active:
                    raise NotController("controller lease not held")
                if self.lease is not None and self.lease.expires_ms <= now_ms() \
                        and not await self.renew(reacquire=False):
                    # By our own clock the lease ran out (we were paused?): commit only if it is ours still.
                    raise NotController("controller lease expired")
                if not self.active:
                    raise NotController("controller lease not held")
                assert self.state is not None
                new = self.state.copy()
                change(new)
                new.version += 1
                delta: Delta = diff(self.state, new, by=self.session)
                try:
                    data = await self.log.append(delta)
                except Conflict as exc:
                    log.warning("metadata commit conflict; reading the committed metadata", reason=str(exc))
                    await self._load()
                    if not await self.renew(reacquire=False) or not self.active:
                        raise NotController("lost controller lease during commit") from None
                    continue
                self.state = new
                break
        if self.on_change is not None:
            await self.on_change(Committed(new, data))
        self._maybe_snapshot()
        return new

    def _maybe_snapshot(self) -> None:
        """Write a snapshot in the background once the deltas since the last one are due."""
        if not self.log.snapshot_due() or (self._snapshotting is not None and not self._snapshotting.done()):
            return
        assert self.state is not None
        self._snapshotting = asyncio.create_task(self._snapshot(self.state), name="metadata-snapshot")

    async def _snapshot(self, state: ClusterState) -> None:
        try:
            await self.log.snapshot(state)
        except Exception as exc:  # the deltas stay; the next commit tries again
            log.warning("metadata snapshot failed", error=repr(exc))

    # ---- membership --------------------------------------------------------------

    async def register(self, session: str, host: str, port: int, http: str,
                       listeners: dict[str, tuple[str, int]] | None = None) -> int:
        node_box: list[int] = []

        def change(s: ClusterState) -> None:
            for n, b in s.brokers.items():
                if b.session == session:
                    node_box.append(n)
                    return
            node = s.next_node_id
            s.next_node_id += 1
            s.brokers[node] = BrokerInfo(node, session, host, port, http, now_ms(),
                                         listeners={k: list(v) for k, v in (listeners or {}).items()})
            # Seen now, before the commit's await: a liveness check running meanwhile must not
            # take the newcomer for a broker that missed its heartbeats.
            self._last_seen[node] = now_ms()
            node_box.append(node)

        await self.commit(change)
        node = node_box[0]
        self._last_seen[node] = now_ms()
        log.info("broker registered", node=node, session=session, endpoint=f"{host}:{port}")
        # A live process now owns this endpoint, so an older broker registered on it
        # is certainly gone: fail it at once instead of waiting for its timeout.
        assert self.state is not None
        stale = [n for n, b in self.state.brokers.items() if n != node and (b.host, b.port) == (host, port)]
        for old in stale:
            await self.fail_broker(old)
        return node

    def heartbeat(self, node: int, session: str, *, store: str = "ok") -> bool:
        """Note a member's heartbeat and how its object store is doing; False if its session was failed."""
        assert self.state is not None
        b = self.state.brokers.get(node)
        if b is None or b.session != session:
            return False
        self._last_seen[node] = now_ms()
        if store == "unavailable":
            self._store_lost_ms.setdefault(node, now_ms())
        else:
            self._store_lost_ms.pop(node, None)
        return True

    async def check_liveness(self) -> None:
        """Fence and replace brokers that missed their session timeout."""
        if not self.active or self.state is None:
            return
        now = now_ms()
        stalled = now - self._last_check_ms if self._last_check_ms else 0
        self._last_check_ms = now
        if stalled > self.session_timeout_ms // 4:
            # Our own event loop did not run (CPU starvation, a pause): heartbeats that
            # arrived meanwhile are still queued, so the stall counts against nobody.
            log.warning("controller liveness check ran late; not counting the gap", ms=stalled)
            for n in self._last_seen:
                self._last_seen[n] += stalled
            for n in self._store_lost_ms:
                self._store_lost_ms[n] += stalled
        deadline = now - self.session_timeout_ms
        dead = [n for n in self.state.brokers if self._last_seen.get(n, 0) < deadline]
        if dead and await self._cut_off_from_the_members(dead):
            await self.step_down()
            return
        for node in dead:
            await self.fail_broker(node)
        for node in self._cut_off_from_the_store(deadline):
            await self.fail_broker(node, reason="its object store has been unavailable for a session timeout")

    async def _cut_off_from_the_members(self, silent: list[int]) -> bool:
        """Whether most other members are alive but cannot reach us: it is we who are cut off.

        A member whose heartbeats get no answer notes it in the bucket
        (:func:`~..storage.layout.unanswered_key`). When the silent members that wrote
        such a note for us lately are a majority of the other members, failing them
        would leave the cluster to a controller its brokers (and likely its clients)
        cannot reach; so the controller steps down instead, and one of them takes the
        lease and fails it. With fewer than two other members there is no majority
        to trust over ourselves, and a silent member is failed as before.
        """
        assert self.state is not None
        others = [n for n, b in self.state.brokers.items() if b.session != self.session]
        if len(others) < 2:
            return False
        fresh_ms = now_ms() - 2 * self.session_timeout_ms
        noted = 0
        for node in silent:
            info = self.state.brokers.get(node)
            if info is None or info.session == self.session:
                continue
            try:
                note = json.loads((await self.store.get(unanswered_key(info.session))).data)
            except (NotFound, StoreUnavailable, ValueError):
                continue
            if isinstance(note, dict) and note.get("holder") == self.session and note.get("at_ms", 0) > fresh_ms:
                noted += 1
        return 2 * noted > len(others)

    async def step_down(self) -> None:
        """Give the lease up and stay away from it for two session timeouts, so a member takes it."""
        log.warning("most members cannot reach this controller but reach the bucket; giving up the lease")
        self._no_lease_until = time.monotonic() + 2 * self.session_timeout_ms / 1000
        await self.release()
        self.lease = None

    def _cut_off_from_the_store(self, deadline: int) -> list[int]:
        """Members that reported their store unavailable since before ``deadline`` while ours answers.

        Such a member still heartbeats but can acknowledge nothing, so its partitions
        must move. When our own store has failed recently the outage is probably the
        whole bucket's, not the member's: failing everybody would only turn a pause into
        a cluster-wide failover, so then nobody is failed for it.
        """
        if state_of(self.store) != "ok":
            return []
        assert self.state is not None
        return [n for n, since in self._store_lost_ms.items() if since < deadline and n in self.state.brokers]

    async def fail_broker(self, node: int, *, reason: str = "its session timed out") -> None:
        assert self.state is not None
        info = self.state.brokers.get(node)
        if info is None:
            return
        log.warning("failing a broker; fencing", node=node, session=info.session, reason=reason)
        await fence_session(self.store, node, info.session)

        await self.commit(lambda s: self._drop_failed(s, node, info.session))
        with contextlib.suppress(NotFound, StoreUnavailable):  # its note, if it could not reach us
            await self.store.delete(unanswered_key(info.session))
        self._last_seen.pop(node, None)
        self._store_lost_ms.pop(node, None)

    @classmethod
    def _drop_failed(cls, s: ClusterState, node: int, session: str) -> None:
        """Remove a fenced broker from the metadata and give its partitions new leaders."""
        s.brokers.pop(node, None)
        s.fenced[session] = node
        cls._reassign_orphans(s)

    @staticmethod
    def _reassign_orphans(s: ClusterState) -> None:
        orphans = [(t.name, i) for t in s.topics.values() for i, p in enumerate(t.partitions)
                   if p.leader not in s.brokers]
        if not orphans:
            return
        targets = s.place(len(orphans))  # one count of the partitions, not one per orphan
        s.set_leaders([(name, i, to) for (name, i), to in zip(orphans, targets, strict=True) if to != -1])

    async def place_orphans(self) -> None:
        """Give leaderless partitions (created with no live broker) a leader."""
        if self.state is None:
            return
        if any(p.leader not in self.state.brokers for t in self.state.topics.values() for p in t.partitions):
            await self.commit(self._reassign_orphans)

    async def allocate_producer_ids(self, count: int) -> int:
        """Reserve ``count`` producer ids in metadata; returns the first."""
        box: list[int] = []

        def change(s: ClusterState) -> None:
            box.clear()
            box.append(allocate_producer_ids(s, count))

        await self.commit(change)
        return box[0]

    # ---- reassignment and drain -----------------------------------------------------

    async def reassign(self, moves: list[tuple[str, int, int]]) -> list[MoveResult]:
        """Metadata-only moves (docs/architecture.md#moving-a-partition); returns per-move results.

        1. every old leader releases its partition (in parallel): no more
           produce, pending data durable, clean checkpoint;
        2. one commit names the new leaders at epoch+1;
        3. the push to each new leader returns once it serves the partition.
        """
        async with self._move_lock:
            t0 = time.perf_counter()
            if not self.active or self.state is None:
                raise NotController("not the controller")
            assert self.peers is not None
            state = self.state
            results: list[MoveResult] = []
            todo: list[MoveResult] = []
            for topic, index, to in moves:
                r = MoveResult(topic=topic, partition=index, to=to)
                results.append(r)
                t = state.topics.get(topic)
                if t is None or not 0 <= index < len(t.partitions):
                    r.error = "UNKNOWN_TOPIC_OR_PARTITION"
                elif to not in state.brokers:
                    r.error = f"INVALID_REPLICA_ASSIGNMENT: broker {to} is not live"
                elif state.brokers[to].draining:
                    r.error = f"INVALID_REPLICA_ASSIGNMENT: broker {to} is draining"
                else:
                    p = t.partitions[index]
                    r.from_node, r.epoch = p.leader, p.epoch
                    if p.leader != to:
                        todo.append(r)
            peers = self.peers

            async def release(r: MoveResult) -> None:
                if r.from_node in state.brokers:
                    await peers.release(r.from_node, r.topic, r.partition, r.epoch)

            outcomes = await asyncio.gather(*(release(r) for r in todo), return_exceptions=True)
            ready = []
            for r, outcome in zip(todo, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    r.error = f"old leader {r.from_node} did not release: {outcome}"
                else:
                    ready.append(r)

            def change(s: ClusterState) -> None:
                # A target checked above may have started draining (or gone) while the old
                # leaders released: a whole cluster stopping drains every broker at once. Such
                # a move goes to a broker that is not draining, or to no leader at all (a new
                # epoch, placed when a broker can take it); never to a broker on its way out.
                stale = [r for r in ready if r.to not in s.brokers or s.brokers[r.to].draining]
                for r, to in zip(stale, s.place(len(stale)), strict=True):
                    log.info("move target is draining; placing elsewhere", topic=r.topic,
                             partition=r.partition, target=r.to, instead=to)
                    r.to = to
                s.set_leaders([(r.topic, r.partition, r.to) for r in ready])

            if ready:
                await self.commit(change)
            log.info("reassigned", moves=len(ready), failed=len(todo) - len(ready),
                     seconds=round(time.perf_counter() - t0, 3))
            return results

    async def drain_broker(self, node: int) -> list[MoveResult]:
        """Move every partition of ``node`` to the others, then drop it from the cluster."""

        def mark(s: ClusterState) -> None:
            if node in s.brokers:
                s.brokers[node].draining = True

        await self.commit(mark)
        assert self.state is not None
        led = self.state.led_by(node)
        targets = self.state.place(len(led), exclude={node})
        results: list[MoveResult] = []
        if led and all(t != -1 for t in targets):
            results = await self.reassign([(t.name, i, to) for (t, i), to in zip(led, targets, strict=True)])
        return results
