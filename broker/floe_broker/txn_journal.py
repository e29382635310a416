"""Where transactions meet the log, the cluster and groups, which ``txn`` knows nothing of.

* The coordinator's journal is a ``__transaction_state`` partition written
  like ``__consumer_offsets`` (:class:`~.group_journal.PartitionJournal`): same
  append path, same WAL group commit, answered once durable.
* :class:`TxnLinks` ends a transaction everywhere (the coordinator's
  :class:`~.txn.coordinator.Markers`): a control batch on each partition,
  appended by that partition's leader through ``LogService.append_marker``,
  and the group's pending offsets applied or dropped by its coordinator. For
  what this broker leads it calls them directly; for the rest it calls the
  leader's ``/internal/v1/txn-markers`` on the admin port, which carries the
  cluster secret (a Kafka-protocol WriteTxnMarkers would need the broker to
  authenticate to its own listeners, which may be SASL or mTLS only).
* It also answers a partition leader's question (the hanging-transaction
  guard) by asking the coordinator, locally or over ``/internal/v1/txn-verify``.
"""

from __future__ import annotations

import asyncio
import datetime
import io
from collections.abc import Awaitable, Callable

from kio.records.schema import NewRecordBatch, Record
from kio.records.writers import write_new_batch
from kio.schema.errors import ErrorCode
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from floe_api.internal import TXN_MARKERS_PATH, TXN_VERIFY_PATH, TxnMarkersRequest, TxnVerifyReply, TxnVerifyRequest

from .cluster.metadata import ClusterState
from .cluster.rpc import Rpc
from .errors import JournalClosed, NotLeader, RpcError
from .group_journal import PartitionJournal
from .groups.coordinator import OFFSETS_TOPIC, GroupCoordinator
from .groups.coordinator import partition_for as group_partition
from .log.partition import CONTROL_ABORT, CONTROL_COMMIT, Partition
from .log.service import LogService
from .protocol import records
from .txn.coordinator import TXN_TOPIC, TxnCoordinator
from .txn.state import TxnMeta

ATTR_MARKER = records.ATTR_TRANSACTIONAL | records.ATTR_CONTROL
MARKER_TIMEOUT_S = 10.0

TxnJournal = PartitionJournal  # __transaction_state records are key/value batches, as offsets are


def encode_marker(producer_id: int, epoch: int, commit: bool, coordinator_epoch: int) -> bytes:
    """Kafka's end-transaction control batch: one record, key (version 0, type), value (version 0,
    coordinator epoch); transactional and control bits set, no sequence."""
    kind = CONTROL_COMMIT if commit else CONTROL_ABORT
    key = i16(0).to_bytes(2, "big") + kind.to_bytes(2, "big")
    value = (0).to_bytes(2, "big") + coordinator_epoch.to_bytes(4, "big", signed=True)
    ts = TZAwareMicros.parse(datetime.datetime.now(datetime.UTC))
    batch = NewRecordBatch(
        producer_id=i64(producer_id), producer_epoch=i16(epoch), base_sequence=i32(-1),
        attributes=i16(ATTR_MARKER),
        records=(Record(attributes=i8(0), timestamp=ts, offset=i64(0), key=key, value=value, headers=()),),
    )
    buf = io.BytesIO()
    write_new_batch(buf, batch)
    return buf.getvalue()


class TxnLinks:
    def __init__(self, *, state: Callable[[], ClusterState], node_id: Callable[[], int], rpc: Rpc | None,
                 leader_partition: Callable[[str, int], Awaitable[Partition | None]],
                 log: Callable[[], LogService], groups: GroupCoordinator,
                 txn: Callable[[], TxnCoordinator]) -> None:
        self._state = state
        self._node_id = node_id
        self._rpc = rpc
        self._leader_partition = leader_partition
        self._log = log
        self._groups = groups
        self._txn = txn

    def _leader(self, topic: str, index: int) -> int | None:
        info = self._state().topics.get(topic)
        if info is None or not 0 <= index < len(info.partitions):
            return None
        return info.partitions[index].leader

    # ---- ending a transaction (the coordinator's side) -----------------------------------

    async def write(self, meta: TxnMeta, commit: bool) -> None:
        """Every marker and group end of ``meta``, grouped per leading broker, all in parallel."""
        per_node: dict[int, TxnMarkersRequest] = {}
        coordinator_epoch = self._coordinator_epoch(meta.transactional_id)

        def request(node: int) -> TxnMarkersRequest:
            return per_node.setdefault(node, TxnMarkersRequest(
                transactional_id=meta.transactional_id, producer_id=meta.producer_id,
                producer_epoch=meta.producer_epoch, commit=commit, coordinator_epoch=coordinator_epoch))

        for topic, index in sorted(meta.partitions):
            leader = self._leader(topic, index)
            if leader is None:
                continue  # the topic was deleted: nothing left to mark
            request(leader).partitions.append((topic, index))
        offsets = self._state().topics.get(OFFSETS_TOPIC)
        for group in sorted(meta.groups):
            if offsets is None:
                continue
            request(offsets.partitions[group_partition(group, len(offsets.partitions))].leader).groups.append(group)
        results = await asyncio.gather(*(self._send(node, req) for node, req in per_node.items()),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    def _coordinator_epoch(self, transactional_id: str) -> int:
        p = self._txn().partition_of(transactional_id)
        info = self._state().topics.get(TXN_TOPIC)
        return info.partitions[p].epoch if info is not None and p is not None else 0

    async def _send(self, node: int, req: TxnMarkersRequest) -> None:
        if node == self._node_id():
            await self.apply_markers(req)
            return
        broker = self._state().brokers.get(node)
        if broker is None or self._rpc is None:
            raise NotLeader(f"broker {node} leading a transaction's partition is unknown")
        await self._rpc.call(broker.http, TXN_MARKERS_PATH, req.model_dump(mode="json"), timeout_s=MARKER_TIMEOUT_S)

    # ---- ending a transaction (the partition leader's and group coordinator's side) ------

    async def apply_markers(self, req: TxnMarkersRequest) -> None:
        """Append the markers for the partitions led here and end the groups coordinated here; raise
        (so the coordinator retries) if any of them is not ours or fails."""
        data = encode_marker(req.producer_id, req.producer_epoch, req.commit, req.coordinator_epoch)
        batches = records.scan_batches(data, max_batch_bytes=len(data))

        async def mark(topic: str, index: int) -> None:
            part = await self._leader_partition(topic, index)
            if part is None:
                raise NotLeader(f"{topic}-{index} is not led here")
            await self._log().append_marker(part, data, batches, commit=req.commit)

        async def end_group(group: str) -> None:
            shard = await self._groups.shard_for(group)
            if shard is None:
                raise JournalClosed(f"group {group} is not coordinated here")
            await shard.end_txn(group, req.producer_id, req.commit)

        jobs = [mark(t, p) for t, p in req.partitions] + [end_group(g) for g in req.groups]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    # ---- the hanging-transaction guard (a partition leader asks) ---------------------------

    async def verify(self, transactional_id: str, producer_id: int, epoch: int, topic: str,
                     index: int) -> ErrorCode:
        """May this transactional batch be appended? Only into an open transaction that added the partition."""
        txn = self._txn()
        p = txn.partition_of(transactional_id)
        if p is None:
            return ErrorCode.invalid_txn_state
        leader = self._leader(TXN_TOPIC, p)
        if leader == self._node_id():
            shard = await txn.shard_at(p)
            if shard is None:
                return ErrorCode.not_enough_replicas  # retriable: the coordinator is moving
            return shard.verify(transactional_id, producer_id, epoch, topic, index)
        broker = self._state().brokers.get(leader) if leader is not None else None
        if broker is None or self._rpc is None:
            return ErrorCode.not_enough_replicas
        body = TxnVerifyRequest(transactional_id=transactional_id, producer_id=producer_id, producer_epoch=epoch,
                                topic=topic, partition=index)
        try:
            reply = TxnVerifyReply.model_validate(
                await self._rpc.call(broker.http, TXN_VERIFY_PATH, body.model_dump(mode="json")))
        except (RpcError, ValueError):
            return ErrorCode.not_enough_replicas
        return ErrorCode(reply.error_code)

    async def answer_verify(self, req: TxnVerifyRequest) -> TxnVerifyReply:
        """The coordinator's side of :meth:`verify`, for a leader on another broker."""
        shard = await self._txn().shard_for(req.transactional_id)
        if shard is None:
            return TxnVerifyReply(error_code=ErrorCode.not_enough_replicas)
        return TxnVerifyReply(error_code=shard.verify(req.transactional_id, req.producer_id, req.producer_epoch,
                                                      req.topic, req.partition))
