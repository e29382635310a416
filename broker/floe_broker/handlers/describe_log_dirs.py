"""DescribeLogDirs (API 35): one "log dir" per broker, the object store, with the sizes of what it leads.

A Floe broker has no disk of its own; the bytes of every partition live in
the bucket. Tools that ask where a broker keeps its logs (kafka-log-dirs,
``Admin.describeLogDirs``, balancers) get one directory named after the
store's URL and, in it, each partition this broker leads with the bytes its
log holds from the log start (consolidated segments and WAL ranges alike).
Nothing is replicated between brokers, so ``offset_lag`` is 0 and there are no
future replicas; total and usable bytes are unknown (-1): a bucket has no size.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from ..protocol.build import mk, nested, response_class
from ..security.acls import Operation
from . import authz
from .context import BrokerContext

DESCRIBE_LOG_DIRS = 35


async def describe_log_dirs(ctx: BrokerContext, version: int, req: Any) -> Any:
    cls = response_class(DESCRIBE_LOG_DIRS, version)
    if not authz.allowed_on_cluster(ctx, Operation.DESCRIBE):
        # Kafka's answer to a principal without DESCRIBE on the cluster: the error, no directories
        return mk(cls, error_code=ErrorCode.cluster_authorization_failed, results=())
    result_cls = nested(cls, "DescribeLogDirsResult")
    topic_cls = nested(cls, "DescribeLogDirsTopic")
    part_cls = nested(cls, "DescribeLogDirsPartition")
    state = ctx.state()
    if req.topics is None:
        wanted = [(name, range(len(info.partitions))) for name, info in sorted(state.topics.items())]
    else:
        wanted = [(t.topic, t.partitions) for t in req.topics]
    topics = []
    for name, indexes in wanted:
        info = state.topics.get(name)
        if info is None:
            continue  # Kafka leaves out what the broker does not hold
        parts = []
        for index in indexes:
            if not 0 <= index < len(info.partitions) or info.partitions[index].leader != ctx.node_id:
                continue
            part = await ctx.leader_partition(name, index)
            if part is None:
                continue
            size = sum(piece.size for piece in part.pieces)
            parts.append(mk(part_cls, partition_index=index, partition_size=size, offset_lag=0, is_future_key=False))
        if parts:
            topics.append(mk(topic_cls, name=name, partitions=tuple(parts)))
    result = mk(result_cls, error_code=ErrorCode.none, log_dir=log_dir(ctx.config.storage), topics=tuple(topics),
                total_bytes=-1, usable_bytes=-1)
    return mk(cls, error_code=ErrorCode.none, results=(result,))


def log_dir(storage: str) -> str:
    """The store's URL without any query string (which may carry settings that are nobody's business)."""
    return storage.split("?", 1)[0]
