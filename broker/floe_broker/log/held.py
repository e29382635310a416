"""What the partition manager keeps about each partition it leads, beside the partition itself.

Shared by the manager, the checkpoint batches and consolidation, so none of
them needs the others' internals.
"""

from __future__ import annotations

from dataclasses import dataclass

from .partition import Partition


@dataclass(eq=False)
class Held:
    partition: Partition
    etag: str  # of the per-partition checkpoint this session wrote at open
    checkpointed_hw: int
    checkpointed_pieces: int
    last_consolidation: float
    dirty: bool = False
    batch_seq: int = 0  # the last checkpoint batch that carried this partition (0: none yet)
    # Carry it once more after a batch that changed its segments or log start, so the
    # batch before that one (which a successor falls back to) stops holding old references.
    carry_again: bool = False

    @property
    def changed(self) -> bool:
        """True when the partition's durable state differs from what was last checkpointed."""
        part = self.partition
        return (
            self.dirty
            or part.high_watermark != self.checkpointed_hw
            or len(part.pieces) != self.checkpointed_pieces
        )

    def mark_checkpointed(self, hw: int, pieces: int) -> None:
        self.checkpointed_hw = hw
        self.checkpointed_pieces = pieces
        self.dirty = False
