"""InitProducerId for idempotent and transactional producers.

Producer ids come from blocks the controller allocates in cluster metadata
(``next_producer_id``), so ids are unique across brokers and restarts. A
client that re-initialises with its current id and epoch (KIP-360, v3+) gets
the same id at epoch+1, which fences its own older in-flight batches.

With a transactional id the request goes to that id's transaction coordinator
(docs/architecture.md#transactions): the id keeps its producer id and gets
the next epoch, which fences every older incarnation (their requests get
PRODUCER_FENCED, their batches INVALID_PRODUCER_EPOCH), after the coordinator
has aborted whatever transaction the old one left open.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..errors import JournalClosed
from ..ordering import CURRENT_TURN
from ..protocol.build import mk, response_class
from ..txn.state import Refused
from . import authz
from .authz import IDEMPOTENT_WRITE, TOPIC, TXN, WRITE

INIT_PRODUCER_ID = 22
MAX_EPOCH = 32767


async def init_producer_id(ctx: Any, version: int, req: Any) -> Any:
    cls = response_class(INIT_PRODUCER_ID, version)
    if req.transactional_id is not None:
        return await _transactional(ctx, cls, req)
    if not (authz.allowed_on_cluster(ctx, IDEMPOTENT_WRITE) or authz.allowed_on_any(ctx, WRITE, TOPIC)):
        # Kafka's rule: IDEMPOTENT_WRITE on the cluster, or WRITE on at least one topic
        return mk(cls, error_code=ErrorCode.cluster_authorization_failed, producer_id=-1, producer_epoch=-1)
    pid = getattr(req, "producer_id", -1)
    epoch = getattr(req, "producer_epoch", -1)
    if pid >= 0 and 0 <= epoch < MAX_EPOCH:
        return mk(cls, error_code=ErrorCode.none, producer_id=pid, producer_epoch=epoch + 1)
    try:
        new_pid = await ctx.next_producer_id()
    except Exception:
        return mk(cls, error_code=ErrorCode.coordinator_not_available, producer_id=-1, producer_epoch=-1)
    return mk(cls, error_code=ErrorCode.none, producer_id=new_pid, producer_epoch=0)


async def _transactional(ctx: Any, cls: Any, req: Any) -> Any:
    """At the id's coordinator; may wait for an abort's markers, so the connection's turn is released."""
    turn = CURRENT_TURN.get()
    if turn is not None:
        turn.release()
    txn_id = req.transactional_id

    def fail(code: ErrorCode) -> Any:
        return mk(cls, error_code=code, producer_id=-1, producer_epoch=-1)

    if not authz.allowed(ctx, WRITE, TXN, txn_id):
        return fail(ErrorCode.transactional_id_authorization_failed)
    if not txn_id:
        return fail(ErrorCode.invalid_request)
    try:
        shard = await ctx.txn.shard_for(txn_id)
    except JournalClosed:
        shard = None
    if shard is None:
        return fail(ErrorCode.not_coordinator)
    timeout_ms = int(req.transaction_timeout.total_seconds() * 1000)
    expected = (getattr(req, "producer_id", -1), getattr(req, "producer_epoch", -1))
    try:
        result = await shard.init_producer(txn_id, timeout_ms, expected, ctx.next_producer_id)
    except JournalClosed:
        return fail(ErrorCode.not_coordinator)
    if isinstance(result, Refused):
        return fail(result.error)
    return mk(cls, error_code=ErrorCode.none, producer_id=result.producer_id, producer_epoch=result.producer_epoch)
