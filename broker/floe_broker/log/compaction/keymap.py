"""The bounded key -> last offset map one compaction pass builds over the dirty range.

Keys are hashed to 16-byte BLAKE2b digests, so a map entry costs the same
whatever the key's size, and the map is bounded by bytes: ``capacity`` is
the byte bound divided by :data:`ENTRY_BYTES`, the measured cost of one
entry in a CPython dict of 16-byte keys and int offsets (about 150 bytes,
dict growth included). When the map is full the pass stops at a batch
boundary; the rest of the dirty range is left for the next pass, as Kafka's
cleaner does. Two keys sharing a digest (2^-128 per pair) would lose the older
one's last value; Kafka's cleaner takes the same risk with its MD5 map.
"""

from __future__ import annotations

import hashlib

ENTRY_BYTES = 160
MIN_ENTRIES = 1024


def digest(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=16).digest()


class KeyMap:
    def __init__(self, max_bytes: int) -> None:
        self.capacity = max(MIN_ENTRIES, max_bytes // ENTRY_BYTES)
        self._last: dict[bytes, int] = {}
        self.peak_entries = 0

    def __len__(self) -> int:
        return len(self._last)

    def has_room_for(self, count: int) -> bool:
        """Room for ``count`` more keys; an empty map always takes one batch, so a pass progresses."""
        return not self._last or len(self._last) + count <= self.capacity

    def put(self, key_digest: bytes, offset: int) -> None:
        self._last[key_digest] = offset
        if len(self._last) > self.peak_entries:
            self.peak_entries = len(self._last)

    def get(self, key_digest: bytes) -> int | None:
        return self._last.get(key_digest)

    @property
    def peak_bytes(self) -> int:
        return self.peak_entries * ENTRY_BYTES

    def clear(self) -> None:
        self._last.clear()
