"""Object formats in the bucket: WAL objects, data objects, tombstones.

Where each object lives (its key) is ``storage.layout``'s business; this
module only knows what is inside.

WAL object (``wal/<node>/<session>/<seq>``) and data object
(``data/<topic-id>/<p>/<base-offset>``) share one layout::

    body   : record batches, grouped so each index entry is one contiguous range
    index  : UTF-8 JSON list of entries
    footer : uint32 index length, 8-byte magic

A WAL index entry is ``[topic_id, partition, epoch, base, last, max_ts, pos, size]``:
one per partition per WAL object, so recovery reads the footer with one
suffix GET and then only the byte ranges it needs. A data-object entry is
``[base, last, max_ts, pos, size]`` at roughly block granularity.

A tombstone is a tiny object whose content is ``storage.layout.TOMBSTONE``;
the controller creates it at a session's next WAL key to fence that session (I3, docs/architecture.md#i3-fencing).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BadObject
from ..storage.layout import TOMBSTONE

WAL_MAGIC = b"FLOEWAL1"
DATA_MAGIC = b"FLOEDAT1"
_FOOTER = struct.Struct(">I8s")
FOOTER_SIZE = _FOOTER.size
SUFFIX_GUESS = 64 * 1024


@dataclass(frozen=True, slots=True)
class WalEntry:
    topic_id: str
    partition: int
    epoch: int
    base: int
    last: int
    max_ts: int
    pos: int
    size: int


def encode_object(parts: Sequence[bytes | bytearray | memoryview], index: list[Any], magic: bytes) -> bytes:
    raw_index = json.dumps(index, separators=(",", ":")).encode()
    return b"".join([*parts, raw_index, _FOOTER.pack(len(raw_index), magic)])


def parse_footer(tail: bytes, object_size: int | None = None) -> tuple[int, bytes]:
    """Return (index length, magic) from the last FOOTER_SIZE bytes."""
    if tail == TOMBSTONE or tail.endswith(TOMBSTONE):
        return 0, TOMBSTONE
    if len(tail) < FOOTER_SIZE:
        raise BadObject("object shorter than its footer")
    length, magic = _FOOTER.unpack_from(tail, len(tail) - FOOTER_SIZE)
    if magic not in (WAL_MAGIC, DATA_MAGIC):
        raise BadObject(f"unknown object magic {magic!r}")
    return length, magic


def index_from_suffix(suffix: bytes) -> tuple[list[Any] | None, int, bytes]:
    """Parse the index from a suffix read. Returns (index or None if the suffix
    was too short, index length, magic)."""
    length, magic = parse_footer(suffix)
    if magic == TOMBSTONE:
        return [], 0, magic
    if len(suffix) < length + FOOTER_SIZE:
        return None, length, magic
    start = len(suffix) - FOOTER_SIZE - length
    return json.loads(suffix[start : start + length]), length, magic


def wal_entries(index: list[Any]) -> list[WalEntry]:
    return [WalEntry(*row) for row in index]
