"""One transactional id's state machine, as Kafka's transaction coordinator keeps it; pure.

States and moves (Kafka's ``TransactionState``)::

    Empty --AddPartitions/AddOffsets--> Ongoing
    Ongoing --EndTxn(commit)--> PrepareCommit --markers durable--> CompleteCommit
    Ongoing --EndTxn(abort), timeout, fence--> PrepareAbort --markers durable--> CompleteAbort
    Complete* --AddPartitions--> Ongoing;  Empty/Complete* --InitProducerId--> Empty (epoch + 1)

Every method takes the current time as an argument and returns the new
:class:`TxnMeta` to persist (or an error code): nothing changes in memory until
the coordinator has made that record durable, so a new coordinator replaying
the journal knows exactly what the clients were told.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

MAX_EPOCH = 32767
NO_PRODUCER = -1


class TxnState(enum.Enum):
    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"

    @property
    def preparing(self) -> bool:
        return self in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)

    @property
    def idle(self) -> bool:
        """No transaction open: a new one may start."""
        return self in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)


@dataclass(frozen=True, slots=True)
class TxnMeta:
    """What the journal holds for one transactional id (its value is this, as JSON)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: frozenset[tuple[str, int]] = frozenset()
    groups: frozenset[str] = frozenset()
    start_ms: int = -1  # when the ongoing transaction began (-1: none)
    updated_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.producer_id, "epoch": self.producer_epoch, "timeout_ms": self.timeout_ms,
                "state": self.state.value, "partitions": sorted([t, p] for t, p in self.partitions),
                "groups": sorted(self.groups), "start_ms": self.start_ms, "updated_ms": self.updated_ms}

    @staticmethod
    def from_json(transactional_id: str, doc: dict[str, Any]) -> TxnMeta:
        return TxnMeta(transactional_id, int(doc["pid"]), int(doc["epoch"]), int(doc["timeout_ms"]),
                       TxnState(doc["state"]), frozenset((t, int(p)) for t, p in doc.get("partitions", [])),
                       frozenset(doc.get("groups", [])), int(doc.get("start_ms", -1)),
                       int(doc.get("updated_ms", 0)))

    def moved(self, now_ms: int, **changes: Any) -> TxnMeta:
        return dataclasses.replace(self, updated_ms=now_ms, **changes)


@dataclass(frozen=True, slots=True)
class Refused:
    """An answer with an error and no state change."""

    error: ErrorCode


@dataclass(frozen=True, slots=True)
class Init:
    """InitProducerId's plan: ``abort_first`` is an open transaction to abort (as PrepareAbort) before
    ``then`` (the new id and epoch, state Empty) is persisted and answered."""

    then: TxnMeta
    abort_first: TxnMeta | None = None


@dataclass(slots=True)
class Limits:
    max_timeout_ms: int = 900_000


def check_producer(meta: TxnMeta, producer_id: int, epoch: int) -> ErrorCode:
    """Kafka's producer checks: another id is INVALID_PRODUCER_ID_MAPPING, an older epoch is fenced."""
    if producer_id != meta.producer_id:
        return ErrorCode.invalid_producer_id_mapping
    if epoch < meta.producer_epoch:
        return ErrorCode.producer_fenced
    if epoch > meta.producer_epoch:
        return ErrorCode.invalid_producer_epoch
    return ErrorCode.none


def init_producer(meta: TxnMeta | None, transactional_id: str, timeout_ms: int, now_ms: int, *,
                  new_producer_id: int, expected: tuple[int, int] = (-1, -1),
                  limits: Limits | None = None) -> Init | Refused:
    """InitProducerId with a transactional id.

    ``new_producer_id`` is a fresh id, used when none exists or the epoch would
    overflow. ``expected`` is the (id, epoch) a client re-initialising after an
    abortable error sends (KIP-360); it must match. The new epoch fences every
    older incarnation.
    """
    if not 0 < timeout_ms <= (limits or Limits()).max_timeout_ms:
        return Refused(ErrorCode.invalid_transaction_timeout)
    if meta is None:
        return Init(TxnMeta(transactional_id, new_producer_id, 0, timeout_ms, updated_ms=now_ms))
    if meta.state.preparing:
        return Refused(ErrorCode.concurrent_transactions)
    pid_in, epoch_in = expected
    if pid_in >= 0 and (pid_in, epoch_in) != (meta.producer_id, meta.producer_epoch) and not (
            pid_in == meta.producer_id and epoch_in == meta.producer_epoch - 1 and meta.state.idle):
        return Refused(ErrorCode.producer_fenced if pid_in == meta.producer_id else
                       ErrorCode.invalid_producer_id_mapping)
    abort = None
    epoch = meta.producer_epoch
    if meta.state is TxnState.ONGOING:
        epoch += 1  # the abort markers carry the new epoch: they fence the old incarnation's writes
        if epoch > MAX_EPOCH:
            return Refused(ErrorCode.concurrent_transactions)
        abort = meta.moved(now_ms, producer_epoch=epoch, state=TxnState.PREPARE_ABORT)
    pid, epoch = meta.producer_id, epoch + 1
    if epoch >= MAX_EPOCH:
        pid, epoch = new_producer_id, 0
    then = TxnMeta(transactional_id, pid, epoch, timeout_ms, updated_ms=now_ms)
    return Init(then, abort)


def add_partitions(meta: TxnMeta, producer_id: int, epoch: int, partitions: set[tuple[str, int]],
                   now_ms: int) -> TxnMeta | Refused:
    code = check_producer(meta, producer_id, epoch)
    if code != ErrorCode.none:
        return Refused(code)
    if meta.state.preparing:
        return Refused(ErrorCode.concurrent_transactions)
    if meta.state is TxnState.ONGOING and partitions <= meta.partitions:
        return meta  # nothing new: no write needed
    start = meta.start_ms if meta.state is TxnState.ONGOING else now_ms
    base = meta.partitions if meta.state is TxnState.ONGOING else frozenset()
    groups = meta.groups if meta.state is TxnState.ONGOING else frozenset()
    return meta.moved(now_ms, state=TxnState.ONGOING, partitions=base | partitions, groups=groups, start_ms=start)


def add_group(meta: TxnMeta, producer_id: int, epoch: int, group: str, now_ms: int) -> TxnMeta | Refused:
    code = check_producer(meta, producer_id, epoch)
    if code != ErrorCode.none:
        return Refused(code)
    if meta.state.preparing:
        return Refused(ErrorCode.concurrent_transactions)
    if meta.state is TxnState.ONGOING and group in meta.groups:
        return meta
    start = meta.start_ms if meta.state is TxnState.ONGOING else now_ms
    base = meta.partitions if meta.state is TxnState.ONGOING else frozenset()
    groups = meta.groups if meta.state is TxnState.ONGOING else frozenset()
    return meta.moved(now_ms, state=TxnState.ONGOING, partitions=base, groups=groups | {group}, start_ms=start)


def end_txn(meta: TxnMeta, producer_id: int, epoch: int, commit: bool, now_ms: int) -> TxnMeta | Refused:
    """EndTxn: Ongoing goes to Prepare*; a retry of a completed end is answered as it was."""
    code = check_producer(meta, producer_id, epoch)
    if code != ErrorCode.none:
        # An abort after a timeout-abort bumped the epoch is answered as done (Kafka does the same
        # for the retry of a completed abort); anything else is refused.
        if (code == ErrorCode.producer_fenced and not commit and epoch == meta.producer_epoch - 1
                and meta.state is TxnState.COMPLETE_ABORT and producer_id == meta.producer_id):
            return meta
        return Refused(code)
    wanted_prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
    wanted_complete = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    if meta.state is TxnState.ONGOING:
        return meta.moved(now_ms, state=wanted_prepare)
    if meta.state in (wanted_prepare, wanted_complete):
        return meta  # a retry: the coordinator finishes (or has finished) the same end
    if meta.state is TxnState.EMPTY and not commit:
        return meta  # aborting nothing is fine (librdkafka does it after an abortable error)
    if meta.state.preparing:
        return Refused(ErrorCode.concurrent_transactions)
    return Refused(ErrorCode.invalid_txn_state)


def complete(meta: TxnMeta, now_ms: int) -> TxnMeta:
    """After every marker is durable: Prepare* becomes Complete*, the partitions forgotten."""
    done = TxnState.COMPLETE_COMMIT if meta.state is TxnState.PREPARE_COMMIT else TxnState.COMPLETE_ABORT
    return meta.moved(now_ms, state=done, partitions=frozenset(), groups=frozenset(), start_ms=-1)


def expired(meta: TxnMeta, now_ms: int) -> bool:
    """An Ongoing transaction past its ``transaction.timeout.ms``: the coordinator aborts it."""
    return meta.state is TxnState.ONGOING and meta.start_ms >= 0 and now_ms - meta.start_ms > meta.timeout_ms


def timeout_abort(meta: TxnMeta, now_ms: int) -> TxnMeta:
    """Abort a timed-out transaction with a bumped epoch, so the stuck producer is fenced (as Kafka)."""
    return meta.moved(now_ms, state=TxnState.PREPARE_ABORT, producer_epoch=min(meta.producer_epoch + 1, MAX_EPOCH))


def in_transaction(meta: TxnMeta | None, producer_id: int, epoch: int, topic: str, partition: int) -> ErrorCode:
    """The partition leader's question before it takes a transactional batch (KIP-890's guard)."""
    if meta is None:
        return ErrorCode.invalid_producer_id_mapping
    code = check_producer(meta, producer_id, epoch)
    if code != ErrorCode.none:
        return ErrorCode.invalid_producer_epoch if code == ErrorCode.producer_fenced else code
    if meta.state is not TxnState.ONGOING or (topic, partition) not in meta.partitions:
        return ErrorCode.invalid_txn_state
    return ErrorCode.none


@dataclass(slots=True)
class Shelf:
    """Every transactional id of one ``__transaction_state`` partition (the replayed journal)."""

    txns: dict[str, TxnMeta] = field(default_factory=dict)

    def apply(self, transactional_id: str, doc: dict[str, Any] | None) -> None:
        if doc is None:
            self.txns.pop(transactional_id, None)
        else:
            self.txns[transactional_id] = TxnMeta.from_json(transactional_id, doc)
