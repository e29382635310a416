"""A partition's leader-epoch history: which epoch wrote which offsets (Kafka's leader epoch cache).

Clients ask for it with OffsetForLeaderEpoch (KIP-101, KIP-320): a consumer
that saw records of epoch E asks the leader where E ended, and treats an end
offset below its position as truncation. Every leader opens a partition at
the epoch the controller gave it, so the history is a list of
``(epoch, start offset)`` pairs, one per leadership that wrote, ascending in
both. It is part of the checkpoint body (the one written on open included),
so a successor after a move or a kill -9 reads the history its predecessor
had, and adds its own entry at the offset it starts writing from.

Floe never truncates acknowledged data, so an epoch's end offset is the start
of the next epoch, or the high watermark for the current one. Kafka's rule
for an entry whose epoch wrote nothing applies: a new epoch starting where
the previous one started replaces it. The list stays bounded: entries wholly
below the log start are dropped (the newest of them is kept, as Kafka's
``truncateFromStart`` does) and at most :data:`MAX_ENTRIES` are kept. For an
epoch older than every entry kept, the answer is that epoch and the first
entry's start offset, Kafka's answer for an epoch below the oldest it knows;
as nothing was truncated, an end offset at or beyond the true one is never
wrong for a consumer's truncation check.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1
MAX_ENTRIES = 1000


@dataclass(slots=True)
class EpochHistory:
    """``(epoch, start offset)`` pairs, ascending in both."""

    epochs: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)

    def assign(self, epoch: int, start: int) -> None:
        """``epoch`` writes from ``start`` on: entries it supersedes go (Kafka's ``assign``)."""
        if self.epochs and self.epochs[-1] == epoch and self.starts[-1] <= start:
            return
        while self.epochs and (self.epochs[-1] >= epoch or self.starts[-1] >= start):
            self.epochs.pop()
            self.starts.pop()
        self.epochs.append(epoch)
        self.starts.append(start)
        if len(self.epochs) > MAX_ENTRIES:
            del self.epochs[: len(self.epochs) - MAX_ENTRIES]
            del self.starts[: len(self.starts) - MAX_ENTRIES]

    def end_offset_for(self, requested: int, log_end: int) -> tuple[int, int]:
        """(the largest known epoch <= ``requested``, where ``requested`` ended), Kafka's ``endOffsetFor``.

        ``(-1, -1)`` when ``requested`` is newer than every epoch known (or -1).
        """
        if requested == UNDEFINED_EPOCH or not self.epochs:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if requested == self.epochs[-1]:
            return requested, log_end
        higher = bisect.bisect_right(self.epochs, requested)
        if higher == len(self.epochs):
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if higher == 0:
            return requested, self.starts[0]
        return self.epochs[higher - 1], self.starts[higher]

    def epoch_for(self, offset: int) -> int:
        """The epoch that wrote ``offset`` (-1 when it is older than the history)."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.epochs[i] if i >= 0 else UNDEFINED_EPOCH

    def to_body(self, log_start: int) -> list[list[int]]:
        """The checkpoint's list, without the entries wholly below ``log_start``."""
        first = max(bisect.bisect_right(self.starts, log_start) - 1, 0)
        return [[e, s] for e, s in zip(self.epochs[first:], self.starts[first:], strict=True)]

    @classmethod
    def from_body(cls, body: list[list[int]]) -> EpochHistory:
        history = cls()
        for epoch, start in body:
            history.assign(int(epoch), int(start))
        return history
