"""Object formats in the bucket: WAL objects, data objects, checkpoint batches, tombstones.

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

A consolidated object (``data/s/<node>/<session>/<seq>``, magic ``FLOEDAT2``)
has the same layout; its index holds one entry per partition range,
``[topic_id, partition, epoch, base, last, max_ts, pos, size, blocks]``,
where ``blocks`` is that range's block-level ``[base, last, max_ts, pos, size]``
list, so a reader of one partition finds its bytes with one suffix GET.

A checkpoint batch (``meta/checkpoints/<node>/<session>/<seq>``) is a UTF-8
JSON document followed by a footer of uint32 CRC-32C of the document and the
8-byte magic ``FLOECKB1``: a truncated or corrupted batch fails the check and
is never trusted.

A tombstone is a tiny object whose content is ``storage.layout.TOMBSTONE``;
the controller creates it at a session's next WAL key to fence that session (I3, docs/architecture.md#i3-fencing).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import crc32c

from ..errors import BadObject
from ..storage.layout import TOMBSTONE

WAL_MAGIC = b"FLOEWAL1"
DATA_MAGIC = b"FLOEDAT1"
CONSOLIDATED_MAGIC = b"FLOEDAT2"
BATCH_MAGIC = b"FLOECKB1"
_BATCH_FOOTER = struct.Struct(">I8s")
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


def object_tail(index: list[Any], magic: bytes) -> bytes:
    """The index and footer that follow an object's batches (see :func:`encode_object`)."""
    raw_index = json.dumps(index, separators=(",", ":")).encode()
    return raw_index + _FOOTER.pack(len(raw_index), magic)


def parse_footer(tail: bytes, object_size: int | None = None) -> tuple[int, bytes]:
    """Return (index length, magic) from the last FOOTER_SIZE bytes."""
    if tail == TOMBSTONE or tail.endswith(TOMBSTONE):
        return 0, TOMBSTONE
    if len(tail) < FOOTER_SIZE:
        raise BadObject("object shorter than its footer")
    length, magic = _FOOTER.unpack_from(tail, len(tail) - FOOTER_SIZE)
    if magic not in (WAL_MAGIC, DATA_MAGIC, CONSOLIDATED_MAGIC):
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


@dataclass(frozen=True, slots=True)
class RangeEntry:
    """One partition's range in a consolidated object, with its block-level index."""

    topic_id: str
    partition: int
    epoch: int
    base: int
    last: int
    max_ts: int
    pos: int
    size: int
    blocks: list[list[int]]


def range_entries(index: list[Any]) -> list[RangeEntry]:
    return [RangeEntry(*row) for row in index]


def encode_batch(document: bytes) -> bytes:
    """A checkpoint batch: the JSON document, then its CRC-32C and the magic."""
    return document + _BATCH_FOOTER.pack(crc32c.crc32c(document), BATCH_MAGIC)


def decode_batch(raw: bytes) -> dict[str, Any]:
    """The document of a checkpoint batch; BadObject if truncated, corrupted or not a batch."""
    if len(raw) < _BATCH_FOOTER.size:
        raise BadObject("checkpoint batch shorter than its footer")
    crc, magic = _BATCH_FOOTER.unpack_from(raw, len(raw) - _BATCH_FOOTER.size)
    if magic != BATCH_MAGIC:
        raise BadObject("not a checkpoint batch (truncated?)")
    document = raw[: len(raw) - _BATCH_FOOTER.size]
    if crc32c.crc32c(document) != crc:
        raise BadObject("checkpoint batch checksum mismatch")
    try:
        doc = json.loads(document)
    except ValueError as exc:  # pragma: no cover - the checksum passed, so this is a writer bug
        raise BadObject(f"checkpoint batch is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadObject("checkpoint batch is not a JSON object")
    return doc
