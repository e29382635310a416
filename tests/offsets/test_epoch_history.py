"""The leader-epoch history's answers are Kafka's leader epoch cache's (LeaderEpochFileCache)."""

from __future__ import annotations

from floe_broker.log import epochs
from floe_broker.log.epochs import EpochHistory


def history(*pairs: tuple[int, int]) -> EpochHistory:
    h = EpochHistory()
    for epoch, start in pairs:
        h.assign(epoch, start)
    return h


def test_an_epoch_ends_where_the_next_one_starts_and_the_current_one_at_the_high_watermark() -> None:
    h = history((1, 0), (3, 100), (4, 250))
    assert h.end_offset_for(1, 300) == (1, 100)
    assert h.end_offset_for(3, 300) == (3, 250)
    assert h.end_offset_for(4, 300) == (4, 300)
    assert h.end_offset_for(2, 300) == (1, 100), "an epoch that never wrote: the largest one below it"
    assert h.end_offset_for(5, 300) == (-1, -1), "newer than any epoch known"
    assert h.end_offset_for(-1, 300) == (-1, -1)
    assert history((5, 40)).end_offset_for(2, 90) == (2, 40), "older than every entry: where the first starts"


def test_an_epoch_that_wrote_nothing_is_replaced_by_the_next_one_at_the_same_offset() -> None:
    h = history((1, 0), (2, 10), (3, 10), (4, 10))
    assert h.to_body(0) == [[1, 0], [4, 10]]
    assert h.end_offset_for(2, 50) == (1, 10)
    h.assign(4, 30)  # the same epoch again, further on: nothing changes
    assert h.to_body(0) == [[1, 0], [4, 10]]


def test_epoch_for_an_offset() -> None:
    h = history((1, 0), (3, 100))
    assert [h.epoch_for(o) for o in (0, 99, 100, 5000)] == [1, 1, 3, 3]
    assert history((2, 10)).epoch_for(3) == -1


def test_the_body_drops_entries_below_the_log_start_and_reads_back() -> None:
    h = history((1, 0), (2, 100), (3, 200), (4, 300))
    body = h.to_body(250)
    assert body == [[3, 200], [4, 300]]
    again = EpochHistory.from_body(body)
    assert again.end_offset_for(3, 400) == (3, 300)
    assert again.end_offset_for(1, 400) == (1, 200)


def test_the_history_is_bounded() -> None:
    h = history(*((e, e * 10) for e in range(1, epochs.MAX_ENTRIES + 50)))
    body = h.to_body(0)
    assert len(body) == epochs.MAX_ENTRIES
    assert body[-1] == [epochs.MAX_ENTRIES + 49, (epochs.MAX_ENTRIES + 49) * 10]
