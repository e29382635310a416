"""InitProducerId for idempotent producers (transactions are not supported).

Producer ids come from blocks the controller allocates in cluster metadata
(``next_producer_id``), so ids are unique across brokers and restarts. A
client that re-initialises with its current id and epoch (KIP-360, v3+) gets
the same id at epoch+1, which fences its own older in-flight batches.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..protocol.build import mk, response_class
from . import authz
from .authz import IDEMPOTENT_WRITE, TOPIC, WRITE

INIT_PRODUCER_ID = 22
MAX_EPOCH = 32767


async def init_producer_id(ctx: Any, version: int, req: Any) -> Any:
    cls = response_class(INIT_PRODUCER_ID, version)
    if req.transactional_id is not None:
        # No transaction coordinator: say so instead of pretending.
        return mk(cls, error_code=ErrorCode.transactional_id_authorization_failed, producer_id=-1, producer_epoch=-1)
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
