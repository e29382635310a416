"""Group coordination on top of the state machine: placement, waiting, timers, persistence.

A group lives in the ``__consumer_offsets`` partition its id hashes to, and
the broker leading that partition is its coordinator (as in Kafka). Each led
partition gets a :class:`Shard` holding the groups that hash to it. The shard
writes through a :class:`Journal` (the partition's ordinary write path, so a
commit is answered only once it is durable) and, when a broker starts leading
the partition, is rebuilt by replaying it: committed offsets, and each group's
last generation, members and assignments. Members therefore keep their
assignment across a coordinator move; they just find the new coordinator.

The shard is bound to one open partition object: when the partition moves
away (reassignment, drain) or the broker is fenced, the journal closes, the
shard is dropped and every waiting member is told NOT_COORDINATOR.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator

import structlog
from kio.schema.errors import ErrorCode

from ..errors import JournalClosed, NonEmptyGroup
from ..shards import Journal, ShardSet, partition_for
from .consumer_protocol import ConsumerGroup, HeartbeatReply, HeartbeatRequest, TopicMeta
from .state import Group, GroupState, JoinReply, Limits, OffsetEntry, SyncReply, Waiting

log = structlog.get_logger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
TICK_S = 0.2
LOAD_EVERY_TICKS = 5


# ---- journal records ------------------------------------------------------------------
# Keys and values are small JSON documents: ["o", group, topic, partition] -> offset,
# ["g", group] -> classic group snapshot, ["c", group] -> consumer-protocol (KIP-848) group
# snapshot (versioned, ConsumerGroup.snapshot); a null value deletes (a tombstone). Whichever of
# "g" and "c" comes last for a group says which protocol it uses.

def offset_key(group: str, topic: str, partition: int) -> bytes:
    return json.dumps(["o", group, topic, partition]).encode()


def group_key(group: str, kind: str = "g") -> bytes:
    return json.dumps([kind, group]).encode()


def txn_offset_key(group: str, topic: str, partition: int, producer_id: int) -> bytes:
    return json.dumps(["t", group, topic, partition, producer_id]).encode()


SNAPSHOT_KEY = b'["s"]'  # marks where a snapshot of the live state starts (ignored on replay)


def offset_value(e: OffsetEntry) -> bytes:
    return json.dumps({"offset": e.offset, "epoch": e.leader_epoch, "metadata": e.metadata,
                       "ts": e.commit_ms}).encode()


class Shard:
    """The groups of one ``__consumer_offsets`` partition led by this broker."""

    def __init__(self, partition: int, journal: Journal, limits: Limits, *, snapshot_after: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.partition = partition
        self.journal = journal
        self.limits = limits
        self.clock = clock
        self.groups: dict[str, Group] = {}
        self._waiters: dict[tuple[str, str, str], list[asyncio.Future[JoinReply | SyncReply]]] = {}
        self.closed = False
        # Snapshots keep the replay short: see _maybe_snapshot.
        self.snapshot_after = snapshot_after
        self.appended = 0  # records in the partition since its start or the last snapshot
        self._inflight: dict[int, list[bytes]] = {}  # first offset -> keys, of appends not yet applied
        self._snapshot_task: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[bool]] = set()
        # Transactional offsets not yet committed: producer id -> {(group, topic, partition): entry}
        self.txn_pending: dict[int, dict[tuple[str, str, int], OffsetEntry]] = {}
        self._last_write: dict[str, asyncio.Future[None]] = {}  # group id -> its latest snapshot write

    # ---- loading ------------------------------------------------------------------------

    async def load(self) -> None:
        t0 = time.perf_counter()
        now = self.clock()
        records = 0
        async for key, value in self.journal.replay():
            records += 1
            try:
                k = json.loads(key)
            except ValueError:
                log.warning("skipping undecodable record in offsets partition", partition=self.partition)
                continue
            if k[0] == "o":
                group = self._group(k[1])
                if value is None:
                    group.offsets.pop((k[2], int(k[3])), None)
                else:
                    v = json.loads(value)
                    group.offsets[(k[2], int(k[3]))] = OffsetEntry(int(v["offset"]), int(v["epoch"]),
                                                                 v.get("metadata"), int(v["ts"]))
            elif k[0] == "g":
                if value is None:
                    self.groups.pop(k[1], None)
                else:
                    self._group(k[1]).restore(json.loads(value), now)
            elif k[0] in ("t", "e"):
                self._replay_txn(k, value)
            elif k[0] == "c":
                if value is None:
                    self.groups.pop(k[1], None)
                    continue
                snap = json.loads(value)
                try:
                    consumer = ConsumerGroup.restore(k[1], snap, now, self.limits.max_size)
                except (ValueError, KeyError, TypeError):
                    log.warning("skipping undecodable consumer group record", partition=self.partition, group=k[1])
                    continue
                group = self._group(k[1])
                group.members.clear()
                group.instances.clear()
                group.state, group.consumer = GroupState.EMPTY, consumer
                group.persisted, group.persisted_kind = snap, "c"
        self.appended = records
        log.info("group coordinator loaded", partition=self.partition, groups=len(self.groups),
                 records=records, seconds=round(time.perf_counter() - t0, 3))

    def _group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id, limits=self.limits)
        return group

    # ---- delivery -------------------------------------------------------------------------

    def _wait(self, group_id: str, member_id: str, kind: str) -> asyncio.Future[JoinReply | SyncReply]:
        fut: asyncio.Future[JoinReply | SyncReply] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((group_id, member_id, kind), []).append(fut)
        return fut

    async def _settle(self, group: Group) -> bool:
        """Persist the group if the last event asks for it, then deliver the queued answers.

        Returns False when the persist failed (the partition is no longer ours): every
        answer then says NOT_COORDINATOR, so no member acts on a state nobody will remember.
        """
        replies, persist = group.take_effects()
        ok = True
        if persist:
            written = group.pending_assignment
            try:
                await self._write_group(group)
            except JournalClosed:
                ok = False
                replies = [(mid, _not_coordinator(r)) for mid, r in replies]
            else:
                # SyncGroup answers only from durable state: the assignment just written
                group.assignment_durable(written)
                more, again = group.take_effects()
                replies += more
                group.persist = group.persist or again
        for member_id, reply in replies:
            kind = "join" if isinstance(reply, JoinReply) else "sync"
            for fut in self._waiters.pop((group.group_id, member_id, kind), []):
                if not fut.done():
                    fut.set_result(reply)
        return ok

    async def _write_group(self, group: Group) -> None:
        if group.unused:
            return
        kind = "g" if group.consumer is None else "c"
        snap = group.snapshot() if group.consumer is None else group.consumer.snapshot()

        def apply() -> None:
            group.persisted, group.persisted_kind = snap, kind

        write = asyncio.ensure_future(
            self._append([(group_key(group.group_id, kind), json.dumps(snap).encode())], apply))
        self._last_write[group.group_id] = write
        try:
            await asyncio.shield(write)
        finally:
            if self._last_write.get(group.group_id) is write:
                del self._last_write[group.group_id]

    async def _written(self, group: Group) -> None:
        """Wait until the group's last write is durable: an answer never reflects state that is not."""
        write = self._last_write.get(group.group_id)
        if write is not None:
            await asyncio.shield(write)

    async def _append(self, entries: list[tuple[bytes, bytes | None]],
                      apply: Callable[[], None] | None = None) -> None:
        """Append, wait until durable, then apply to memory (commits are visible only once durable)."""
        await self.journal.reserve(sum(len(k) + len(v or b"") + 16 for k, v in entries))
        base, durable = self.journal.append(entries)
        self._inflight[base] = [k for k, _ in entries]
        try:
            await durable
            if apply is not None:
                apply()
        finally:
            del self._inflight[base]
        self.appended += len(entries)
        self.maybe_snapshot()

    # ---- snapshots ------------------------------------------------------------------------------

    def _live(self) -> list[tuple[bytes, bytes | None]]:
        """Applied offsets and each group's last *durable* snapshot (never a half-done rebalance)."""
        entries: list[tuple[bytes, bytes | None]] = [(SNAPSHOT_KEY, None)]
        for g in self.groups.values():
            if g.state is GroupState.DEAD:
                continue
            entries.extend((offset_key(g.group_id, t, p), offset_value(e)) for (t, p), e in g.offsets.items())
            if g.persisted is not None:
                entries.append((group_key(g.group_id, g.persisted_kind), json.dumps(g.persisted).encode()))
        entries.extend((txn_offset_key(g, t, p, pid), offset_value(e))
                       for pid, pending in self.txn_pending.items() for (g, t, p), e in pending.items())
        return entries

    def maybe_snapshot(self) -> None:
        """Once the partition holds far more records than live state, rewrite the live state and
        trim everything before it, so a new coordinator replays little (``__consumer_offsets`` is
        otherwise only ever appended to)."""
        if self.appended < self.snapshot_after or self.closed:
            return
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        self._snapshot_task = asyncio.create_task(self._snapshot(), name=f"offsets-snapshot-{self.partition}")

    async def _snapshot(self) -> None:
        try:
            probe = self._live()
            if self.appended < 4 * len(probe):
                return  # mostly live state already: a snapshot would not shrink it
            await self.journal.reserve(sum(len(k) + len(v or b"") + 16 for k, v in probe))
            # Built after the last await. Appends not applied yet stay in the log (the cut
            # is at or below them) and their keys stay out of the snapshot, whose older
            # value would otherwise come after them in the log and win on replay.
            pending = dict(self._inflight)
            in_flight = {k for keys in pending.values() for k in keys}
            entries = [(k, v) for k, v in self._live() if k not in in_flight]
            base, durable = self.journal.append(entries)
            await durable
            cut = min([base, *pending])
            self.journal.trim_before(cut)
            log.info("offsets partition snapshot", partition=self.partition, records=len(entries),
                     replaced=self.appended, log_start=cut)
            self.appended = len(entries)
        except JournalClosed:
            pass

    def close(self) -> None:
        """The partition moved away: every waiting member must find the new coordinator."""
        self.closed = True
        for (_, member_id, kind), futs in self._waiters.items():
            reply: JoinReply | SyncReply = (JoinReply(member_id=member_id, error=ErrorCode.not_coordinator)
                                            if kind == "join" else SyncReply(error=ErrorCode.not_coordinator))
            for fut in futs:
                if not fut.done():
                    fut.set_result(reply)
        self._waiters.clear()

    async def tick(self) -> None:
        now = self.clock()
        for group in list(self.groups.values()):
            try:
                group.tick(now)
            except Exception:  # one broken group must not stop the timers of the others
                log.exception("group tick failed", group=group.group_id)
                continue
            if group.outbox or group.persist:
                # concurrently: one group's persist must not delay every other group's timers
                task = asyncio.create_task(self._settle(group))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
            elif group.unused and group.state is GroupState.EMPTY:
                self.groups.pop(group.group_id, None)

    # ---- group membership -------------------------------------------------------------------

    async def join(self, group_id: str, **kw: object) -> JoinReply:
        group = self._group(group_id)
        reply = await self._answer(group, group.join(self.clock(), **kw), "join")  # type: ignore[arg-type]
        assert isinstance(reply, JoinReply)
        return reply

    async def sync(self, group_id: str, **kw: object) -> SyncReply:
        group = self.groups.get(group_id)
        if group is None:
            return SyncReply(error=ErrorCode.unknown_member_id)
        reply = await self._answer(group, group.sync(self.clock(), **kw), "sync")  # type: ignore[arg-type]
        assert isinstance(reply, SyncReply)
        return reply

    async def _answer(self, group: Group, result: JoinReply | SyncReply | Waiting,
                      kind: str) -> JoinReply | SyncReply:
        """An immediate answer, or wait for the one the rest of the group's round trip produces."""
        fut = self._wait(group.group_id, result.member_id, kind) if isinstance(result, Waiting) else None
        ok = await self._settle(group)
        if fut is None:
            assert not isinstance(result, Waiting)
            return result if ok else _not_coordinator(result)
        return await fut

    async def heartbeat(self, group_id: str, *, member_id: str, instance_id: str | None,
                        generation: int) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id
        return group.heartbeat(self.clock(), member_id=member_id, instance_id=instance_id, generation=generation)

    async def leave(self, group_id: str, members: list[tuple[str, str | None]]) -> list[ErrorCode]:
        group = self.groups.get(group_id)
        if group is None:
            return [ErrorCode.unknown_member_id for _ in members]
        codes = [group.leave(self.clock(), member_id=m, instance_id=i) for m, i in members]
        await self._settle(group)
        return codes

    # ---- KIP-848 consumer groups -----------------------------------------------------------------

    async def consumer_heartbeat(self, group_id: str, request: HeartbeatRequest,
                                 topics: dict[str, TopicMeta]) -> HeartbeatReply:
        """One ConsumerGroupHeartbeat, answered once the state it reflects is durable."""
        group = self._group(group_id)
        if group.state is GroupState.DEAD:
            return HeartbeatReply(member_id=request.member_id, epoch=-1, error=ErrorCode.coordinator_not_available)
        if group.consumer is None:
            if group.members or group.pending:
                # Kafka, without online migration: a classic group with members is not a consumer group
                return HeartbeatReply(member_id=request.member_id, epoch=-1, error=ErrorCode.group_id_not_found,
                                      message=f"Group {group_id} is not a consumer group.")
            # an empty classic group (or a new one) becomes a consumer-protocol group, offsets kept
            group.consumer = ConsumerGroup(group_id, max_size=self.limits.max_size)
            group.state = GroupState.EMPTY
        reply = group.consumer.heartbeat(self.clock(), request, topics)
        try:
            if reply.changed:
                await self._write_group(group)
            else:
                await self._written(group)
        except JournalClosed:
            return HeartbeatReply(member_id=request.member_id, epoch=-1, error=ErrorCode.not_coordinator)
        return reply

    # ---- offsets ------------------------------------------------------------------------------

    async def commit(
        self, group_id: str, *, member_id: str, instance_id: str | None, generation: int,
        offsets: list[tuple[str, int, OffsetEntry]],
    ) -> ErrorCode:
        """Validate membership, append the offsets and apply them once durable."""
        group = self._group(group_id)
        code = group.check_commit(member_id=member_id, instance_id=instance_id, generation=generation)
        if code != ErrorCode.none:
            return code
        if not offsets:
            return code
        if member_id in group.members:
            group.members[member_id].last_seen = self.clock()  # a commit proves the member is alive
        def apply() -> None:
            if group.state is GroupState.DEAD:
                return  # deleted meanwhile; on replay its tombstone follows this record too
            # The tick may have forgotten the (then still unused) group during the write.
            current = self.groups.setdefault(group_id, group)
            for t, p, e in offsets:
                current.offsets[(t, p)] = e

        await self._append([(offset_key(group_id, t, p), offset_value(e)) for t, p, e in offsets], apply)
        return ErrorCode.none

    # ---- transactional offsets (TxnOffsetCommit, docs/architecture.md#transactions) ------------
    # ["t", group, topic, partition, pid] -> offset: pending until the transaction's end record
    # ["e", group, pid], which follows the offsets it commits (as "o" records) in one append.

    async def txn_commit(self, group_id: str, producer_id: int, *, member_id: str, instance_id: str | None,
                         generation: int, offsets: list[tuple[str, int, OffsetEntry]]) -> ErrorCode:
        """Journal offsets of an open transaction; OffsetFetch sees them only after its commit."""
        group = self._group(group_id)
        if generation >= 0 or member_id:  # exactly-once v2 (KIP-447): the member must be current
            code = group.check_commit(member_id=member_id, instance_id=instance_id, generation=generation)
            if code != ErrorCode.none:
                return code

        def apply() -> None:
            pending = self.txn_pending.setdefault(producer_id, {})
            for t, p, e in offsets:
                pending[(group_id, t, p)] = e

        await self._append([(txn_offset_key(group_id, t, p, producer_id), offset_value(e))
                            for t, p, e in offsets], apply)
        return ErrorCode.none

    def pending_txn_partitions(self, group_id: str) -> set[tuple[str, int]]:
        """The group's partitions an open transaction has committed offsets for (not yet visible)."""
        return {(t, p) for pending in self.txn_pending.values() for (g, t, p) in pending if g == group_id}

    async def end_txn(self, group_id: str, producer_id: int, commit: bool) -> None:
        """The transaction ended: its offsets for this group become committed offsets, or are dropped."""
        pending = {k: e for k, e in self.txn_pending.get(producer_id, {}).items() if k[0] == group_id}
        entries: list[tuple[bytes, bytes | None]] = (
            [(offset_key(g, t, p), offset_value(e)) for (g, t, p), e in pending.items()] if commit else [])
        # a value, not a tombstone: key compaction must keep it after the "t" records it closes
        entries.append((json.dumps(["e", group_id, producer_id]).encode(), b"{}"))

        def apply() -> None:
            mine = self.txn_pending.get(producer_id, {})
            for key in pending:
                mine.pop(key, None)
            if not mine:
                self.txn_pending.pop(producer_id, None)
            if commit and pending:
                group = self._group(group_id)
                for (_, t, p), e in pending.items():
                    group.offsets[(t, p)] = e

        await self._append(entries, apply)

    def _replay_txn(self, k: list[object], value: bytes | None) -> None:
        if k[0] == "t" and value is not None:
            v = json.loads(value)
            self.txn_pending.setdefault(int(k[4]), {})[(str(k[1]), str(k[2]), int(k[3]))] = OffsetEntry(  # type: ignore[call-overload]
                int(v["offset"]), int(v["epoch"]), v.get("metadata"), int(v["ts"]))
        elif k[0] == "e":
            mine = self.txn_pending.get(int(k[2]), {})  # type: ignore[call-overload]
            for key in [key for key in mine if key[0] == k[1]]:
                del mine[key]

    def fetch_offsets(self, group_id: str) -> dict[tuple[str, int], OffsetEntry]:
        group = self.groups.get(group_id)
        return dict(group.offsets) if group else {}

    async def delete_group(self, group_id: str) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None or group.unused:
            return ErrorCode.group_id_not_found
        if not group.is_empty or group.state is not GroupState.EMPTY:
            return ErrorCode.non_empty_group
        tombstones: list[tuple[bytes, bytes | None]] = [(offset_key(group_id, t, p), None) for t, p in group.offsets]
        tombstones.append((group_key(group_id), None))  # on replay this also drops commits still in flight
        tombstones.append((group_key(group_id, "c"), None))
        # Dead at once, as in Kafka: a join or commit racing the write gets COORDINATOR_NOT_AVAILABLE
        # (and retries into a fresh group) instead of landing in a group that is about to vanish.
        group.state = GroupState.DEAD
        self.groups.pop(group_id, None)
        await self._append(tombstones)
        return ErrorCode.none

    async def delete_offsets(self, group_id: str, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], ErrorCode]:
        group = self.groups.get(group_id)
        if group is None or group.unused:
            raise KeyError(group_id)
        if not group.is_empty and group.listed_protocol_type != "consumer":
            raise NonEmptyGroup(group_id)
        subscribed = set() if group.is_empty else group.subscribed_topics()
        codes: dict[tuple[str, int], ErrorCode] = {}
        drop: list[tuple[str, int]] = []
        for t, p in wanted:
            if subscribed is None or t in subscribed:
                codes[(t, p)] = ErrorCode.group_subscribed_to_topic
            else:
                codes[(t, p)] = ErrorCode.none
                if (t, p) in group.offsets:
                    drop.append((t, p))
        if drop:
            def apply() -> None:
                for key in drop:
                    group.offsets.pop(key, None)

            await self._append([(offset_key(group_id, t, p), None) for t, p in drop], apply)
        return codes


def _not_coordinator(reply: JoinReply | SyncReply) -> JoinReply | SyncReply:
    if isinstance(reply, JoinReply):
        return JoinReply(member_id=reply.member_id, error=ErrorCode.not_coordinator)
    return SyncReply(error=ErrorCode.not_coordinator)


class GroupCoordinator:
    """All shards of this broker; finds (and loads) the shard for a group id."""

    def __init__(
        self,
        journal_for: Callable[[int], Awaitable[Journal | None]],
        offsets_partitions: Callable[[], int],
        limits: Limits,
        *,
        snapshot_after: int = 10_000,
    ) -> None:
        self.journal_for = journal_for  # offsets partition -> its journal if led here, else None
        self.offsets_partitions = offsets_partitions  # 0 while the topic does not exist
        self.limits = limits
        self.snapshot_after = snapshot_after
        self.shard_set: ShardSet[Shard] = ShardSet(
            journal_for, lambda p, journal: Shard(p, journal, self.limits, snapshot_after=self.snapshot_after),
            what="offsets partition", on_loaded=Shard.maybe_snapshot,
        )
        self.shards = self.shard_set.shards
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="group-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.shard_set.close()

    async def shard_for(self, group_id: str) -> Shard | None:
        """The group's shard if this broker coordinates it, else None (NOT_COORDINATOR)."""
        n = self.offsets_partitions()
        if n <= 0 or not group_id:
            return None
        return await self.shard_set.shard_at(partition_for(group_id, n))

    def all_groups(self) -> Iterator[Group]:
        for shard in self.shards.values():
            yield from shard.groups.values()

    async def _tick_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(TICK_S)
            rounds += 1
            if rounds % LOAD_EVERY_TICKS == 0:
                try:
                    await self.shard_set.load_led(self.offsets_partitions())
                except Exception:
                    log.exception("loading led offsets partitions failed")
            for p, shard in self.shard_set.live():
                try:
                    await shard.tick()
                except Exception:  # a tick must never stop the timers of every other group
                    log.exception("group tick failed", partition=p)
