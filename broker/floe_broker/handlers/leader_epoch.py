"""The ``current_leader_epoch`` check of Fetch, ListOffsets and OffsetForLeaderEpoch (KIP-320).

A client sends the leader epoch its metadata holds for the partition. Older
than the partition's epoch: its metadata is stale, FENCED_LEADER_EPOCH, and
it refreshes. Newer: this broker has not caught up with the move yet,
UNKNOWN_LEADER_EPOCH, and the client retries. -1 means the client does not
say, and is never refused.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

NO_EPOCH = -1


def epoch_error(partition_epoch: int, current_leader_epoch: int) -> ErrorCode:
    """Kafka's answer to a request that names ``current_leader_epoch`` (``none`` when it may go on)."""
    if current_leader_epoch == NO_EPOCH:
        return ErrorCode.none
    if current_leader_epoch < partition_epoch:
        return ErrorCode.fenced_leader_epoch
    if current_leader_epoch > partition_epoch:
        return ErrorCode.unknown_leader_epoch
    return ErrorCode.none
