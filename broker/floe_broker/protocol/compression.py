"""A record batch's records section, compressed and decompressed, and the varints inside it.

The produce path never opens a batch (it stays opaque bytes). The few readers
that must see records do: key compaction (keys, tombstones, rebuilt batches)
and timestamp lookups (each record's own timestamp). They share this one
codec, with Kafka's five compression codecs through ``cramjam`` (snappy both
raw and in the xerial framing older Java clients write).
"""

from __future__ import annotations

import struct

import cramjam

from ..errors import InvalidRecords
from .records import HEADER_SIZE

CODEC_MASK = 0x07  # the codec bits of a batch's attributes
NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = 16  # magic, version, compatible version
_I32 = struct.Struct(">i")


def records_section(batch: bytes | bytearray | memoryview, codec: int) -> bytes:
    """The batch's records (everything after its 61-byte header), decompressed."""
    raw = bytes(memoryview(batch)[HEADER_SIZE:])
    if codec == NONE:
        return raw
    if codec == GZIP:
        return bytes(cramjam.gzip.decompress(raw))
    if codec == SNAPPY:
        if not raw.startswith(XERIAL_MAGIC):
            return bytes(cramjam.snappy.decompress_raw(raw))
        out, pos = bytearray(), XERIAL_HEADER
        while pos < len(raw):
            (n,) = _I32.unpack_from(raw, pos)
            out += cramjam.snappy.decompress_raw(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return bytes(out)
    if codec == LZ4:
        return bytes(cramjam.lz4.decompress(raw))
    if codec == ZSTD:
        return bytes(cramjam.zstd.decompress(raw))
    raise InvalidRecords(f"unknown compression codec {codec}")


def compress_section(section: bytes, codec: int, original: bytes | bytearray | memoryview) -> bytes:
    """``section`` compressed as ``original`` was (its codec, and snappy's framing if it had one)."""
    if codec == NONE:
        return section
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(section))
    if codec == SNAPPY:
        if bytes(memoryview(original)[HEADER_SIZE : HEADER_SIZE + len(XERIAL_MAGIC)]) == XERIAL_MAGIC:
            block = bytes(cramjam.snappy.compress_raw(section))
            head = bytes(memoryview(original)[HEADER_SIZE : HEADER_SIZE + XERIAL_HEADER])
            return head + _I32.pack(len(block)) + block
        return bytes(cramjam.snappy.compress_raw(section))
    if codec == LZ4:
        return bytes(cramjam.lz4.compress(section))
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(section))
    raise InvalidRecords(f"unknown compression codec {codec}")


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (Kafka's record fields) at ``pos``: (value, position after it)."""
    b = buf[pos]
    if b < 0x80:  # one byte: by far the most common case
        return (b >> 1) ^ -(b & 1), pos + 1
    raw, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos + 1
        shift += 7
        if shift > 63:
            raise InvalidRecords("varint longer than 10 bytes")
