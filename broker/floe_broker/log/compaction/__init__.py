"""Kafka's key compaction (``cleanup.policy=compact``): keep the last record per key, at its offset.

Not to be confused with consolidation (``log.consolidation``), which
rewrites WAL ranges into larger data objects without looking at records.

* ``settings``: a topic's compaction settings, Kafka's defaults;
* ``records``: reading and rebuilding stored batches record by record;
* ``keymap``: the bounded digest(key) -> last offset map of one pass;
* ``retain``: which records of a batch a pass keeps (pure), and the seam
  for transactions;
* ``job``: the background job on the partition leader (select, map,
  rewrite, swap).

This package's top level is what the produce and admin handlers need:
refusing keyless records on a compacted topic, and the accepted policies.
"""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode

from ...errors import InvalidRecords
from .records import CODEC_MASK, KEYLESS_MESSAGE, first_keyless, header, iter_batches
from .settings import POLICIES, is_compacted

__all__ = ["KEYLESS_MESSAGE", "POLICIES", "is_compacted", "produce_error", "produce_message", "require_keys"]


def require_keys(batch_bytes: bytes | bytearray | memoryview) -> ErrorCode | None:
    """INVALID_RECORD if a record in these validated batches has no key (CORRUPT_MESSAGE if unreadable).

    The one place the produce path looks at records, and only for compacted
    topics: Kafka refuses a keyless record there, because compaction could
    never tell which value it supersedes.
    """
    try:
        return None if first_keyless(batch_bytes) is None else ErrorCode.invalid_record
    except InvalidRecords:
        return ErrorCode.corrupt_message


INLINE_CHECK_BYTES = 16 * 1024  # uncompressed batches up to this are checked on the loop (microseconds)


async def produce_error(policy: str | None, batch_bytes: bytes | bytearray | memoryview) -> ErrorCode | None:
    """The produce error for these batches on a topic with this ``cleanup.policy``, or None.

    Ordinary topics cost nothing here. On a compacted topic, compressed or
    large batches are decompressed and read in a worker thread, so the event
    loop keeps serving; a small uncompressed one is read in place, where a
    thread hop would cost more than the read.
    """
    if not is_compacted(policy):
        return None
    if len(batch_bytes) <= INLINE_CHECK_BYTES and not any(
            header(b).attributes & CODEC_MASK for b in iter_batches(batch_bytes)):
        return require_keys(batch_bytes)
    return await asyncio.to_thread(require_keys, batch_bytes)


def produce_message(error: ErrorCode) -> str | None:
    """The error message Kafka sends with a produce error from :func:`require_keys`."""
    return KEYLESS_MESSAGE if error == ErrorCode.invalid_record else None
