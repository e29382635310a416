"""Which records of a batch a compaction pass keeps: pure, no I/O, no clocks.

A record is dropped when its offset is below the log start, when the key
map holds a later offset for its key (it was superseded), when it has no
key (written before the topic became compacted; Kafka's cleaner drops those
too), or when it is a tombstone whose delete horizon has passed. Records at
or beyond the end of the map's coverage (``mapped_upto``) are kept: a later
pass decides (a batch wholly there is kept without reading its records).

Tombstones and transaction markers follow Kafka's cleaner (KIP-534): the
first pass that finds one removable sets the batch's delete horizon (now +
``delete.retention.ms``, in the batch itself); a later pass removes it once
the horizon has passed. So ``delete.retention.ms`` counts from when the
tombstone's batch was first cleaned, not from its timestamp. Tombstones
cleaned by an older pass without a horizon fall back to the partition's
per-pass marks (``Rules.tombstone_expired``).

Transactions (a pass never reaches the last stable offset, so every
transaction it reads is decided):

* data batches of an aborted transaction are dropped whole, wherever they
  are in the range, and never enter the key map (an aborted value must not
  supersede a committed one);
* a commit or abort marker stays while any data batch of its transaction is
  still in the log; the pass that leaves none of them (it removed the last
  one, or found none) sets the marker's delete horizon, and a pass after
  the horizon removes it (``Outcome.removed_marker``: the job drops the
  matching aborted-index entry in the same step as the swap, never
  earlier, so a consumer never holds an aborted range without its end).
  Kafka starts the horizon at the cleaning after the one that removed the
  data; here it starts in that same pass, which needs no extra pass to be
  scheduled and still keeps the marker ``delete.retention.ms`` past the
  removal of the data it closes.

The partition's newest batch is kept whole, so the log never ends in a gap.
Batches are kept whole (bytes untouched) when nothing in them goes, dropped
when everything goes, and rebuilt (``records.rebuild``) otherwise, so every
surviving record stays at its original offset.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import records
from .keymap import KeyMap, digest

Aborted = Mapping[int, list[tuple[int, int]]]  # producer id -> [(first offset, marker offset)] of aborted txns


def aborted_index(entries: list[list[int]]) -> dict[int, list[tuple[int, int]]]:
    """The partition's aborted-transaction index ([pid, first, marker] rows) by producer id, in offset order."""
    out: dict[int, list[tuple[int, int]]] = {}
    for pid, first, marker in entries:
        out.setdefault(pid, []).append((first, marker))
    for ranges in out.values():
        ranges.sort()
    return out


def is_aborted(head: records.Header, aborted: Aborted) -> bool:
    """A transactional data batch whose transaction was aborted (its offsets lie in an aborted range).

    One producer's transactions never overlap, so its ranges are disjoint and
    a bisection finds the only candidate.
    """
    if not head.transactional or head.control:
        return False
    ranges = aborted.get(head.producer_id)
    if not ranges:
        return False
    i = bisect.bisect_right(ranges, (head.base_offset, 1 << 62)) - 1
    return i >= 0 and ranges[i][0] <= head.base_offset <= ranges[i][1]


@dataclass
class Rules:
    keys: KeyMap
    mapped_upto: int  # offsets at or above this were not in the map: keep them
    log_start: int
    cleaned_before: int  # offsets below this were compacted by an earlier pass
    tombstone_expired: Callable[[int], bool]  # offset (below cleaned_before) -> its tombstone may go
    keep_from: int = 1 << 62  # a batch reaching this offset (the partition's newest) is kept whole
    now_ms: int = 0
    delete_retention_ms: int = 86_400_000
    aborted: Aborted = field(default_factory=dict)
    # Producer ids with a data batch kept since their last marker in this pass: filter_batch's one
    # piece of state, so batches must be filtered in offset order, from the partition's first.
    open_data: set[int] = field(default_factory=set)


@dataclass
class Outcome:
    data: bytes | memoryview | None  # the batch to write, or None when nothing of it survives
    records_in: int = 0
    records_out: int = 0
    oldest_clean_tombstone: int | None = None  # lowest kept horizon-less tombstone offset below cleaned_before
    horizon: int | None = None  # a kept tombstone or marker of this batch may go from then on
    removed_marker: int | None = None  # the offset of the transaction marker dropped here
    aborted: bool = False  # dropped as aborted transactional data


def filter_batch(batch: memoryview, rules: Rules) -> Outcome:
    head = records.header(batch)
    out = _filter(batch, head, rules)
    if head.transactional and not head.control and out.data is not None:
        rules.open_data.add(head.producer_id)
    return out


def _filter(batch: memoryview, head: records.Header, rules: Rules) -> Outcome:
    if head.last_offset >= rules.keep_from:
        return Outcome(batch, head.records_count, head.records_count)
    if head.last_offset < rules.log_start:
        return Outcome(None, head.records_count, 0)
    if head.control:
        return _filter_marker(batch, head, rules)
    if is_aborted(head, rules.aborted):
        return Outcome(None, head.records_count, 0, aborted=True)
    if head.base_offset >= rules.mapped_upto:
        return Outcome(batch, head.records_count, head.records_count)
    section = records.records_section(batch, head.codec)
    recs = records.parse_records(section, head.records_count)
    kept: list[records.Record] = []
    out = Outcome(None, len(recs))
    horizon = head.delete_horizon
    needs_horizon = False
    for rec in recs:
        offset = head.base_offset + rec.offset_delta
        if offset < rules.log_start or rec.key is None:
            continue
        if offset < rules.mapped_upto:
            latest = rules.keys.get(digest(rec.key))
            if latest is not None and latest > offset:
                continue
        if rec.tombstone:
            if horizon is not None:
                if horizon <= rules.now_ms:
                    continue
                out.horizon = horizon
            elif offset < rules.cleaned_before:
                if rules.tombstone_expired(offset):
                    continue
                if out.oldest_clean_tombstone is None:
                    out.oldest_clean_tombstone = offset
            elif offset < rules.mapped_upto:
                needs_horizon = True
        kept.append(rec)
    out.records_out = len(kept)
    if not kept:
        return out
    if needs_horizon:
        out.horizon = rules.now_ms + rules.delete_retention_ms
        out.data = records.rebuild(batch, head, section, kept, out.horizon)
    else:
        out.data = batch if len(kept) == len(recs) else records.rebuild(batch, head, section, kept)
    return out


def _filter_marker(batch: memoryview, head: records.Header, rules: Rules) -> Outcome:
    """Kafka's rule for a commit or abort marker: kept until its transaction's data is gone, then for
    ``delete.retention.ms`` more (non-transactional control batches are kept as they are)."""
    n = head.records_count
    if not head.transactional or head.producer_id in rules.open_data:
        rules.open_data.discard(head.producer_id)
        return Outcome(batch, n, n)
    horizon = head.delete_horizon
    if horizon is None:
        horizon = rules.now_ms + rules.delete_retention_ms
        return Outcome(records.with_delete_horizon(batch, horizon), n, n, horizon=horizon)
    if horizon <= rules.now_ms:
        return Outcome(None, n, 0, removed_marker=head.base_offset)
    return Outcome(batch, n, n, horizon=horizon)


def map_batch(batch: memoryview, keys: KeyMap, first: int, aborted: Aborted | None = None) -> None:
    """Add the batch's keyed records at or above offset ``first`` to the map (never a marker's or an
    aborted transaction's: those records are no value of their key)."""
    head = records.header(batch)
    if head.control or head.last_offset < first or is_aborted(head, aborted or {}):
        return
    for rec in records.parse_records(records.records_section(batch, head.codec), head.records_count):
        offset = head.base_offset + rec.offset_delta
        if rec.key is not None and offset >= first:
            keys.put(digest(rec.key), offset)
