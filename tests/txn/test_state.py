"""The transaction state machine, pure: every move, the fencing rules and the hanging-transaction guard."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from floe_broker.txn import state as sm
from floe_broker.txn.coordinator import partition_for
from floe_broker.txn.state import Init, Limits, Refused, TxnMeta, TxnState

T0 = 1_000_000


def started(pid: int = 7) -> TxnMeta:
    plan = sm.init_producer(None, "tx", 60_000, T0, new_producer_id=pid)
    assert isinstance(plan, Init) and plan.abort_first is None
    return plan.then


def ongoing() -> TxnMeta:
    meta = sm.add_partitions(started(), 7, 0, {("t", 0), ("t", 1)}, T0 + 10)
    assert isinstance(meta, TxnMeta)
    return meta


def test_a_new_id_gets_a_new_producer_at_epoch_zero() -> None:
    meta = started()
    assert (meta.producer_id, meta.producer_epoch, meta.state) == (7, 0, TxnState.EMPTY)


def test_reinitialising_bumps_the_epoch_and_keeps_the_id() -> None:
    plan = sm.init_producer(started(), "tx", 60_000, T0, new_producer_id=99)
    assert isinstance(plan, Init)
    assert (plan.then.producer_id, plan.then.producer_epoch) == (7, 1)


def test_an_open_transaction_is_aborted_with_a_fencing_epoch_before_the_new_one_starts() -> None:
    plan = sm.init_producer(ongoing(), "tx", 60_000, T0 + 20, new_producer_id=99)
    assert isinstance(plan, Init) and plan.abort_first is not None
    assert plan.abort_first.state is TxnState.PREPARE_ABORT and plan.abort_first.producer_epoch == 1
    assert plan.abort_first.partitions == {("t", 0), ("t", 1)}
    assert plan.then.producer_epoch == 2 and plan.then.state is TxnState.EMPTY


def test_the_epoch_overflows_into_a_new_producer_id() -> None:
    meta = TxnMeta("tx", 7, sm.MAX_EPOCH - 1, 60_000)
    plan = sm.init_producer(meta, "tx", 60_000, T0, new_producer_id=99)
    assert isinstance(plan, Init) and (plan.then.producer_id, plan.then.producer_epoch) == (99, 0)


def test_timeouts_outside_the_bounds_are_refused() -> None:
    assert sm.init_producer(None, "tx", 0, T0, new_producer_id=1) == Refused(ErrorCode.invalid_transaction_timeout)
    too_long = sm.init_producer(None, "tx", 10_001, T0, new_producer_id=1, limits=Limits(max_timeout_ms=10_000))
    assert too_long == Refused(ErrorCode.invalid_transaction_timeout)


def test_add_partitions_opens_the_transaction_and_a_repeat_changes_nothing() -> None:
    meta = ongoing()
    assert meta.state is TxnState.ONGOING and meta.start_ms == T0 + 10
    assert sm.add_partitions(meta, 7, 0, {("t", 0)}, T0 + 30) is meta
    more = sm.add_partitions(meta, 7, 0, {("u", 0)}, T0 + 30)
    assert isinstance(more, TxnMeta) and more.start_ms == T0 + 10 and ("u", 0) in more.partitions


def test_older_epochs_are_fenced_and_other_ids_refused() -> None:
    meta = sm.init_producer(ongoing(), "tx", 60_000, T0, new_producer_id=9)
    assert isinstance(meta, Init)
    current = meta.then
    assert sm.add_partitions(current, 7, 0, {("t", 0)}, T0) == Refused(ErrorCode.producer_fenced)
    assert sm.end_txn(current, 7, 0, True, T0) == Refused(ErrorCode.producer_fenced)
    assert sm.add_partitions(current, 8, 2, {("t", 0)}, T0) == Refused(ErrorCode.invalid_producer_id_mapping)


def test_end_prepares_and_complete_forgets_the_partitions() -> None:
    prepared = sm.end_txn(ongoing(), 7, 0, True, T0 + 40)
    assert isinstance(prepared, TxnMeta) and prepared.state is TxnState.PREPARE_COMMIT
    assert sm.end_txn(prepared, 7, 0, True, T0 + 41) is prepared, "a retried EndTxn is the same end"
    assert sm.end_txn(prepared, 7, 0, False, T0 + 41) == Refused(ErrorCode.concurrent_transactions)
    assert sm.add_partitions(prepared, 7, 0, {("t", 0)}, T0) == Refused(ErrorCode.concurrent_transactions)
    done = sm.complete(prepared, T0 + 50)
    assert done.state is TxnState.COMPLETE_COMMIT and not done.partitions and done.start_ms == -1
    assert sm.end_txn(done, 7, 0, True, T0 + 60) is done
    assert sm.end_txn(done, 7, 0, False, T0 + 60) == Refused(ErrorCode.invalid_txn_state)


def test_committing_nothing_is_invalid_but_aborting_nothing_is_fine() -> None:
    assert sm.end_txn(started(), 7, 0, True, T0) == Refused(ErrorCode.invalid_txn_state)
    assert sm.end_txn(started(), 7, 0, False, T0) == started()


def test_an_expired_transaction_is_aborted_with_a_bumped_epoch() -> None:
    meta = ongoing()
    assert not sm.expired(meta, T0 + 10 + 60_000)
    assert sm.expired(meta, T0 + 10 + 60_001)
    aborting = sm.timeout_abort(meta, T0 + 70_000)
    assert aborting.state is TxnState.PREPARE_ABORT and aborting.producer_epoch == 1
    done = sm.complete(aborting, T0 + 70_001)
    assert sm.end_txn(done, 7, 0, False, T0 + 70_002) is done, "the stuck producer's own abort succeeds"
    assert sm.end_txn(done, 7, 0, True, T0 + 70_002) == Refused(ErrorCode.producer_fenced)


def test_the_guard_accepts_only_partitions_of_the_open_transaction() -> None:
    meta = ongoing()
    assert sm.in_transaction(meta, 7, 0, "t", 1) == ErrorCode.none
    assert sm.in_transaction(meta, 7, 0, "t", 2) == ErrorCode.invalid_txn_state
    assert sm.in_transaction(started(), 7, 0, "t", 0) == ErrorCode.invalid_txn_state, "no open transaction"
    assert sm.in_transaction(meta, 7, 1, "t", 0) == ErrorCode.invalid_producer_epoch
    assert sm.in_transaction(None, 7, 0, "t", 0) == ErrorCode.invalid_producer_id_mapping


def test_state_round_trips_through_its_journal_value() -> None:
    meta = sm.add_group(ongoing(), 7, 0, "g", T0 + 5)
    assert isinstance(meta, TxnMeta)
    assert TxnMeta.from_json("tx", meta.to_json()) == meta


def test_placement_is_kafkas_string_hash() -> None:
    # Java: "a".hashCode() == 97, and String.hashCode is 31*h + char over UTF-16 units
    assert partition_for("a", 50) == 97 % 50
    h = 0
    for c in "my-txn":
        h = (31 * h + ord(c)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    assert partition_for("my-txn", 50) == abs(h) % 50
