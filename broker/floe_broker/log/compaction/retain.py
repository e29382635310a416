"""Which records of a batch a compaction pass keeps: pure, no I/O, no clocks.

A record is dropped when its offset is below the log start, when the key
map holds a later offset for its key (it was superseded), when it has no
key (written before the topic became compacted; Kafka's cleaner drops those
too), or when it is a tombstone that was already compacted once and whose
``delete.retention.ms`` has passed since. Records at or beyond the end of
the map's coverage (``mapped_upto``) are kept: a later pass decides (a
batch wholly there is kept without reading its records).

The partition's newest batch is kept whole, so the log never ends in a gap.
Batches are kept whole (bytes untouched) when nothing in them goes, dropped
when everything goes, and rebuilt (``records.rebuild``) otherwise, so every
surviving record stays at its original offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import records
from .keymap import KeyMap, digest


def kept_whole(head: records.Header) -> bool:
    """Batches compaction never filters: the seam for transactions.

    Control batches (transaction markers) are kept as they are for now;
    aborted transactional data is kept too, because deciding it needs the
    partition's aborted-transaction index. When transactions land, this is
    the one function that learns to drop aborted batches and markers whose
    transaction is wholly compacted away.
    """
    return head.control


@dataclass
class Rules:
    keys: KeyMap
    mapped_upto: int  # offsets at or above this were not in the map: keep them
    log_start: int
    cleaned_before: int  # offsets below this were compacted by an earlier pass
    tombstone_expired: Callable[[int], bool]  # offset (below cleaned_before) -> its tombstone may go
    keep_from: int = 1 << 62  # a batch reaching this offset (the partition's newest) is kept whole


@dataclass
class Outcome:
    data: bytes | memoryview | None  # the batch to write, or None when nothing of it survives
    records_in: int = 0
    records_out: int = 0
    oldest_clean_tombstone: int | None = None  # lowest kept tombstone offset below cleaned_before
    dirty_tombstone: bool = False  # a kept tombstone compacted for the first time now


def filter_batch(batch: memoryview, rules: Rules) -> Outcome:
    head = records.header(batch)
    if kept_whole(head) or head.last_offset >= rules.keep_from or head.base_offset >= rules.mapped_upto:
        return Outcome(batch, head.records_count, head.records_count)
    if head.last_offset < rules.log_start:
        return Outcome(None, head.records_count, 0)
    section = records.records_section(batch, head.codec)
    recs = records.parse_records(section, head.records_count)
    kept: list[records.Record] = []
    out = Outcome(None, len(recs))
    for rec in recs:
        offset = head.base_offset + rec.offset_delta
        if offset < rules.log_start or rec.key is None:
            continue
        if offset < rules.mapped_upto:
            latest = rules.keys.get(digest(rec.key))
            if latest is not None and latest > offset:
                continue
        if rec.tombstone:
            if offset < rules.cleaned_before:
                if rules.tombstone_expired(offset):
                    continue
                if out.oldest_clean_tombstone is None:
                    out.oldest_clean_tombstone = offset
            elif offset < rules.mapped_upto:
                out.dirty_tombstone = True
        kept.append(rec)
    out.records_out = len(kept)
    if not kept:
        return out
    out.data = batch if len(kept) == len(recs) else records.rebuild(batch, head, section, kept)
    return out


def map_batch(batch: memoryview, keys: KeyMap, first: int) -> None:
    """Add the batch's keyed records at or above offset ``first`` to the map."""
    head = records.header(batch)
    if kept_whole(head) or head.last_offset < first:
        return
    for rec in records.parse_records(records.records_section(batch, head.codec), head.records_count):
        offset = head.base_offset + rec.offset_delta
        if rec.key is not None and offset >= first:
            keys.put(digest(rec.key), offset)
